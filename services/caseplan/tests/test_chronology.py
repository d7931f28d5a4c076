"""Case plan's chronology fed from the real broker, and rebuilt from it by replay."""

import time
from uuid import uuid4

from sqlalchemy import create_engine, delete

from caseplan.projections import chronology_entries
from caseplan.service import definition
from hub.contracts.intake import (
    MatchConfirmed,
    PossibleMatchFound,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
    ReferralWithdrawn,
)
from hub.replay import rebuild_projections
from hub.testing import bearer, settings_for


def _started(service_client):
    """Caseplan, called as a front-door staff member (the chronology is staff-only)."""
    client = service_client(definition)
    client.headers.update(bearer(client.settings, "front-door-demo"))
    return client


def _referral(family_id):
    return ReferralReceived.example().model_copy(
        update={"family_id": family_id, "referral_id": uuid4()}
    )


def _chronology(client, family_id, timeout_s=90, expect=1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/families/{family_id}/chronology")
        if response.status_code == 200 and len(response.json()["entries"]) >= expect:
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"chronology of {family_id} never reached {expect} entries")


def test_the_chronology_shows_a_familys_events_in_order_a_page_at_a_time(service_client, publish):
    caseplan = _started(service_client)
    family = uuid4()
    referrals = [_referral(family) for _ in range(3)]
    for referral in referrals:
        publish(referral)

    _chronology(caseplan, family, expect=3)
    first = caseplan.get(f"/v1/families/{family}/chronology", params={"limit": 2}).json()
    rest = caseplan.get(
        f"/v1/families/{family}/chronology", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()

    entries = first["entries"] + rest["entries"]
    assert [e["subject"] for e in entries] == [str(r.referral_id) for r in referrals]
    assert rest["next_cursor"] is None
    assert entries[0]["actor"] == "Jo Adeyemi, Harlesden Primary School"
    assert entries[0]["service"] == "intake"
    assert "Amira" not in str(entries)  # the chronology summary carries no child's name


def test_triage_and_withdrawal_appear_in_the_chronology_without_free_text(service_client, publish):
    caseplan = _started(service_client)
    family = uuid4()
    triaged_referral, withdrawn_referral = _referral(family), _referral(family)
    triaged = ReferralTriaged.example().model_copy(
        update={"family_id": family, "referral_id": triaged_referral.referral_id}
    )
    withdrawn = ReferralWithdrawn.example().model_copy(
        update={"family_id": family, "referral_id": withdrawn_referral.referral_id}
    )
    for event in (triaged_referral, withdrawn_referral, triaged, withdrawn):
        publish(event)

    entries = _chronology(caseplan, family, expect=4)["entries"]

    by_type = {entry["event_type"]: entry for entry in entries}
    decision = by_type["earlyhelp.referral.triaged.v1"]
    assert decision["subject"] == str(triaged.referral_id)
    assert decision["actor"] == triaged.decided_by
    assert decision["summary"] == (
        "Referral triaged: level of need early_help; route early_help in brent-harlesden, "
        f"opened case {triaged.case_id}"
    )
    withdrawal = by_type["earlyhelp.referral.withdrawn.v1"]
    assert withdrawal["actor"] == "harlesden-primary-school"
    assert withdrawal["summary"] == "Referral withdrawn by the referrer before triage"
    # Neither the rationale nor the reason (free text about the family) is copied.
    assert "Mum consents" not in str(entries)
    assert "health visitor" not in str(entries)


def test_a_referral_matched_into_a_family_and_unlinked_takes_its_history_along(
    service_client, publish
):
    caseplan = _started(service_client)
    known_family, own_family, fresh_family = uuid4(), uuid4(), uuid4()
    earlier, referral = _referral(known_family), _referral(own_family)
    ids = {"referral_id": referral.referral_id}
    possible = PossibleMatchFound.example().model_copy(
        update={"family_id": own_family, "candidate_family_id": known_family, **ids}
    )
    confirmed = MatchConfirmed.example().model_copy(
        update={"family_id": known_family, "previous_family_id": own_family, **ids}
    )
    for event in (earlier, referral, possible, confirmed):
        publish(event)

    entries = _chronology(caseplan, known_family, expect=4)["entries"]

    assert [e["event_type"].split(".")[2] for e in entries] == [
        "received",
        "received",
        "possible_match_found",
        "match_confirmed",
    ]
    assert str(known_family) not in entries[2]["summary"]  # not named before it is confirmed
    assert caseplan.get(f"/v1/families/{own_family}/chronology").status_code == 404

    publish(
        ReferralUnlinked.example().model_copy(
            update={"family_id": fresh_family, "previous_family_id": known_family, **ids}
        )
    )
    moved = _chronology(caseplan, fresh_family, expect=4)["entries"]
    assert {e["subject"] for e in moved} == {str(referral.referral_id)}
    left = caseplan.get(f"/v1/families/{known_family}/chronology").json()["entries"]
    assert [e["subject"] for e in left] == [str(earlier.referral_id)]


def test_partners_cannot_read_a_familys_chronology(service_client):
    caseplan = service_client(definition)
    partner = bearer(caseplan.settings, "harlesden-primary-school")

    response = caseplan.get(f"/v1/families/{uuid4()}/chronology", headers=partner)
    assert response.status_code == 403
    assert caseplan.get(f"/v1/families/{uuid4()}/chronology").status_code == 401


def test_a_bad_cursor_is_a_clear_422(service_client):
    caseplan = _started(service_client)
    response = caseplan.get(f"/v1/families/{uuid4()}/chronology", params={"cursor": "nonsense"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.cursor"


def test_the_chronology_is_rebuilt_by_replaying_the_topics(
    service_client, publish, database_url, kafka_bootstrap, tmp_path
):
    caseplan = _started(service_client)
    family = uuid4()
    for _ in range(2):
        publish(_referral(family))
    before = _chronology(caseplan, family, expect=2)["entries"]
    service_client.stop(caseplan)  # rebuilds run with the service stopped

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(delete(chronology_entries))
    engine.dispose()

    settings = settings_for("caseplan", database_url, kafka_bootstrap, tmp_path)
    applied = rebuild_projections(definition, settings, ["chronology"])

    assert applied["chronology"] >= 2
    restarted = _started(service_client)
    after = _chronology(restarted, family, expect=2)["entries"]
    strip = [{k: v for k, v in e.items() if k != "recorded_at"} for e in before]
    assert [{k: v for k, v in e.items() if k != "recorded_at"} for e in after] == strip
