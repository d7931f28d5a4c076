"""The team around the family, consent per episode, overrides and schools through case
plan's HTTP API (issue 14), on a case opened by intake's and allocation's events on the
broker, against SQLite and PostgreSQL."""

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from sqlalchemy import create_engine, func, select

from caseplan.service import definition
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.dates import authority_date
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.replay import rebuild_projections
from hub.tables import event_store
from hub.testing import bearer, settings_for

LEAD, MANAGER, CHAIR = "samira-okafor", "harlesden-team-manager", "brent-panel-chair"
SCHOOL, HEALTH, POLICE = "harlesden-primary-school", "brent-health-visiting", "met-police-brent"
NEW_EVENTS = (
    "earlyhelp.case.team_member_added.v1",
    "earlyhelp.case.team_member_removed.v1",
    "earlyhelp.case.consent_narrowed.v1",
    "earlyhelp.case.consent_withdrawn.v1",
    "earlyhelp.case.consent_recorded.v1",
    "earlyhelp.case.safeguarding_override_recorded.v1",
    "earlyhelp.case.safeguarding_override_ended.v1",
    "earlyhelp.case.child_school_recorded.v1",
)


def _client(service_client):
    return service_client(definition)


def _as(client, who):
    return bearer(client.settings, who)


def _referred_and_allocated(publish, family_id=None, lead=None, consent=True):
    """A school's referral, triaged to open a case, and the case allocated."""
    family_id = family_id or uuid4()
    case_id = uuid4()
    now = datetime.now(UTC)
    received = ReferralReceived.example()
    update = {"family_id": family_id, "referral_id": uuid4(), "received_at": now}
    if not consent:
        update["consent"] = None
        update["safeguarding_override"] = {
            "reason": "Asking would alert him.",
            "recorded_by": "jo.adeyemi@harlesden-primary.example.org",
            "recorded_at": (now - timedelta(hours=1)).isoformat(),
        }
    received = ReferralReceived.model_validate(received.model_dump() | update)
    publish(received)
    publish(
        ReferralTriaged.example().model_copy(
            update={
                "family_id": family_id,
                "referral_id": received.referral_id,
                "case_id": case_id,
                "decided_at": now - timedelta(minutes=5),
            }
        )
    )
    allocated = CaseAllocated.example().model_copy(
        update={"family_id": family_id, "case_id": case_id, "allocated_at": now}
    )
    if lead is not None:
        allocated = allocated.model_copy(
            update={"lead_professional": allocated.lead_professional.model_copy(update=lead)}
        )
    publish(allocated)
    return received, case_id


def _wait(client, case_id, until, who=LEAD, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/cases/{case_id}", headers=_as(client, who))
        if response.status_code == 200 and until(response.json()):
            return response.json()
        time.sleep(0.05)
    raise AssertionError(f"case {case_id} never reached the expected state")


def _events(database_url, case_id):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(
                    select(event_store.c.event_type)
                    .where(event_store.c.stream_id == f"case-{case_id}")
                    .order_by(event_store.c.stream_version)
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()


def _count_events(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(event_store)).scalar_one()
    finally:
        engine.dispose()


def _fields(response):
    return [error["field"] for error in response.json().get("errors", [])]


def test_the_team_consent_override_and_schools_of_a_case(service_client, publish, database_url):
    client = _client(service_client)
    lead, manager = _as(client, LEAD), _as(client, MANAGER)
    received, case_id = _referred_and_allocated(publish)
    path = f"/v1/cases/{case_id}"
    opened = _wait(client, case_id, lambda v: v["consent"] is not None and v["team"])

    # From the start: the referrer on the team for feedback, the referral's consent.
    assert opened["team"] == [
        {
            "member_id": SCHOOL,
            "member_kind": "partner",
            "name": "Harlesden Primary School",
            "role": "referrer",
            "source": "referral",
            "added_at": opened["team"][0]["added_at"],
            "added_by": None,
        }
    ]
    assert opened["consent"]["source"] == "referral"
    assert opened["consent"]["referral_id"] == str(received.referral_id)
    assert opened["consent"]["purposes"] == [p.value for p in received.consent.covers]
    assert opened["safeguarding_override"] is None and opened["schools"] == []

    # The team: added by the lead professional and by her manager, once each.
    added = client.post(
        f"{path}/team", json={"member_id": HEALTH, "role": "Health visitor"}, headers=lead
    )
    assert added.status_code == 201, added.text
    assert added.json()["event"]["member_kind"] == "partner"
    by_manager = client.post(
        f"{path}/team",
        json={"member_id": POLICE, "role": "Neighbourhood officer"},
        headers=manager | {"Idempotency-Key": "police-joins"},
    )
    assert by_manager.status_code == 201, by_manager.text
    again = client.post(
        f"{path}/team",
        json={"member_id": POLICE, "role": "Neighbourhood officer"},
        headers=manager | {"Idempotency-Key": "police-joins"},
    )
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    stored = _count_events(database_url)
    twice = client.post(f"{path}/team", json={"member_id": HEALTH, "role": "Again"}, headers=lead)
    assert twice.status_code == 409 and twice.json()["type"].endswith("/already-a-member")
    unknown = client.post(
        f"{path}/team", json={"member_id": "nobody-we-know", "role": "x"}, headers=lead
    )
    assert unknown.status_code == 422 and _fields(unknown) == ["member_id"]
    not_member = client.post(f"{path}/team/{SCHOOL}/removal", json={}, headers=lead)
    assert not_member.status_code == 409 and not_member.json()["type"].endswith("/not-a-member")
    assert _count_events(database_url) == stored
    removed = client.post(
        f"{path}/team/{POLICE}/removal", json={"reason": "Work done."}, headers=manager
    )
    assert removed.status_code == 201, removed.text

    # Consent: the referral's narrowed, withdrawn, then recorded afresh.
    wider = client.post(
        f"{path}/consent/narrowing",
        json={"purposes": ["share_with_partner_agencies", "panel_discussion"]},
        headers=lead,
    )
    assert wider.status_code == 422 and _fields(wider) == ["purposes"]
    narrowed = client.post(
        f"{path}/consent/narrowing", json={"purposes": ["referrer_feedback"]}, headers=lead
    )
    assert narrowed.status_code == 201, narrowed.text
    view = client.get(path, headers=lead).json()
    assert (view["consent"]["status"], view["consent"]["purposes"]) == (
        "narrowed",
        ["referrer_feedback"],
    )
    assert client.post(f"{path}/consent/withdrawal", json={}, headers=lead).status_code == 201
    assert client.get(path, headers=lead).json()["consent"]["status"] == "withdrawn"
    nothing = client.post(f"{path}/consent/withdrawal", json={}, headers=lead)
    assert nothing.status_code == 409 and nothing.json()["type"].endswith("/no-consent")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    twice = ["panel_discussion"] * 2
    refused = client.post(
        f"{path}/consent",
        headers=lead,
        json={"given_by": "Leila", "given_at": future, "purposes": twice},
    )
    assert refused.status_code == 422 and set(_fields(refused)) == {"given_at", "purposes"}
    given_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    recorded = client.post(
        f"{path}/consent",
        headers=lead,
        json={
            "given_by": "Leila Hassan",
            "given_at": given_at,
            "purposes": ["share_with_partner_agencies", "panel_discussion"],
        },
    )
    assert recorded.status_code == 201, recorded.text

    # A safeguarding override: its review date after today; ended while it stands.
    today = authority_date(datetime.now(UTC))
    reason = "Asking dad would put mum and the children at risk."
    too_soon = client.post(
        f"{path}/safeguarding-override",
        headers=manager,
        json={"reason": reason, "review_date": today.isoformat()},
    )
    assert too_soon.status_code == 422 and _fields(too_soon) == ["review_date"]
    review_date = (today + timedelta(days=28)).isoformat()
    override = client.post(
        f"{path}/safeguarding-override",
        headers=manager,
        json={"reason": reason, "review_date": review_date},
    )
    assert override.status_code == 201, override.text
    view = client.get(path, headers=lead).json()
    assert view["safeguarding_override"]["review_date"] == review_date
    assert view["safeguarding_override"]["stands"] is True
    ended = client.post(
        f"{path}/safeguarding-override/ending",
        headers=lead,
        json={"reason": "Mum moved to a refuge."},
    )
    assert ended.status_code == 201, ended.text
    assert (
        client.post(
            f"{path}/safeguarding-override/ending", headers=lead, json={"reason": "Again."}
        ).status_code
        == 409
    )

    # A child's school: a child of the family, a school partner.
    child = str(received.children[0].person_id)
    wrong = client.post(
        f"{path}/schools", headers=lead, json={"person_id": str(uuid4()), "school_id": HEALTH}
    )
    assert wrong.status_code == 422 and _fields(wrong) == ["person_id", "school_id"]
    school = client.post(
        f"{path}/schools", headers=lead, json={"person_id": child, "school_id": SCHOOL}
    )
    assert school.status_code == 201, school.text

    view = client.get(path, headers=lead).json()
    assert [(m["member_id"], m["role"], m["source"]) for m in view["team"]] == [
        (HEALTH, "Health visitor", "team"),
        (SCHOOL, "referrer", "referral"),
    ]
    assert view["consent"]["source"] == "recorded"
    assert view["consent"]["purposes"] == ["share_with_partner_agencies", "panel_discussion"]
    assert view["safeguarding_override"] is None
    assert view["schools"] == [
        {"person_id": child, "school_id": SCHOOL, "school_name": "Harlesden Primary School"}
    ]
    assert _events(database_url, case_id) == [
        "earlyhelp.case.team_member_added.v1",
        "earlyhelp.case.team_member_added.v1",
        "earlyhelp.case.team_member_removed.v1",
        "earlyhelp.case.consent_narrowed.v1",
        "earlyhelp.case.consent_withdrawn.v1",
        "earlyhelp.case.consent_recorded.v1",
        "earlyhelp.case.safeguarding_override_recorded.v1",
        "earlyhelp.case.safeguarding_override_ended.v1",
        "earlyhelp.case.child_school_recorded.v1",
    ]

    # Every change is on the family's chronology; free text (reasons, roles) is not.
    chronology = client.get(
        f"/v1/families/{received.family_id}/chronology?limit=200", headers=lead
    ).json()
    shown = [entry["event_type"] for entry in chronology["entries"]]
    assert all(event_type in shown for event_type in NEW_EVENTS)
    assert not any(reason in entry["summary"] for entry in chronology["entries"])
    assert {"kind": "team_member", "party_id": HEALTH} in [
        {"kind": p["kind"], "party_id": p["party_id"]} for p in chronology["involved"]
    ]


def test_only_the_lead_professional_or_their_manager_changes_the_team(
    service_client, publish, database_url
):
    client = _client(service_client)
    # Samira's team's case, led by a colleague: she works it, but does not lead it.
    _, case_id = _referred_and_allocated(
        publish,
        lead={
            "worker_id": uuid4(),
            "name": "Ola Bello",
            "email": "ola.bello@brent.example.gov.uk",
            "staff_client_id": None,
        },
    )
    path = f"/v1/cases/{case_id}"
    _wait(client, case_id, lambda v: v["consent"] is not None)
    samira, manager, chair = _as(client, LEAD), _as(client, MANAGER), _as(client, CHAIR)
    stored = _count_events(database_url)
    member = {"member_id": HEALTH, "role": "Health visitor"}
    assert client.post(f"{path}/team", json=member, headers=samira).status_code == 403
    assert client.post(f"{path}/team", json=member, headers=chair).status_code == 403
    override = {
        "reason": "Risk.",
        "review_date": (datetime.now(UTC) + timedelta(days=9)).date().isoformat(),
    }
    assert (
        client.post(f"{path}/safeguarding-override", json=override, headers=samira).status_code
        == 403
    )
    assert _count_events(database_url) == stored
    assert client.post(f"{path}/team", json=member, headers=manager).status_code == 201
    assert client.post(f"{path}/team/{HEALTH}/removal", json={}, headers=samira).status_code == 403
    # Consent and schools are recorded by anyone who works the case.
    narrowed = client.post(
        f"{path}/consent/narrowing", json={"purposes": ["referrer_feedback"]}, headers=samira
    )
    assert narrowed.status_code == 201, narrowed.text
    assert client.post(f"/v1/cases/{uuid4()}/team", json=member, headers=manager).status_code == 404


def test_a_new_case_of_the_family_starts_without_the_old_cases_consent(service_client, publish):
    client = _client(service_client)
    received, first = _referred_and_allocated(publish)
    _wait(client, first, lambda v: v["consent"] is not None)
    given_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {"given_by": "Leila Hassan", "given_at": given_at, "purposes": ["panel_discussion"]}
    recorded = client.post(f"/v1/cases/{first}/consent", headers=_as(client, LEAD), json=body)
    assert recorded.status_code == 201, recorded.text
    # The family referred again, with a safeguarding override instead of consent.
    _, second = _referred_and_allocated(publish, family_id=received.family_id, consent=False)
    view = _wait(client, second, lambda v: any(m["source"] == "referral" for m in v["team"]))
    assert view["consent"] is None
    nothing = client.post(
        f"/v1/cases/{second}/consent/withdrawal", json={}, headers=_as(client, LEAD)
    )
    assert nothing.status_code == 409


def test_a_provider_a_panel_commissioned_joins_the_team(service_client, publish):
    client = _client(service_client)
    received, case_id = _referred_and_allocated(publish)
    _wait(client, case_id, lambda v: v["status"] == "open")
    panel = PanelDecisionRecorded.example()
    publish(panel.model_copy(update={"case_id": case_id, "family_id": received.family_id}))
    provider = panel.package[0].provider_id
    lead = _as(client, LEAD)
    deadline = time.monotonic() + 20
    while True:
        added = client.post(
            f"/v1/cases/{case_id}/team",
            headers=lead,
            json={"member_id": provider, "role": "Parenting group"},
        )
        if added.status_code != 422 or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # until the panel's package is projected
    assert added.status_code == 201, added.text
    assert added.json()["event"]["member_kind"] == "provider"


def test_the_team_consent_and_schools_are_rebuilt_by_replay_as_they_were(
    service_client, publish, database_url, kafka_bootstrap, tmp_path
):
    client = _client(service_client)
    lead = _as(client, LEAD)
    received, case_id = _referred_and_allocated(publish)
    path = f"/v1/cases/{case_id}"
    _wait(client, case_id, lambda v: v["consent"] is not None and v["team"])
    review_date = (authority_date(datetime.now(UTC)) + timedelta(days=20)).isoformat()
    for route, body in (
        ("team", {"member_id": HEALTH, "role": "Health visitor"}),
        ("consent/narrowing", {"purposes": ["referrer_feedback"]}),
        ("schools", {"person_id": str(received.children[1].person_id), "school_id": SCHOOL}),
    ):
        assert client.post(f"{path}/{route}", json=body, headers=lead).status_code == 201
    override = {"reason": "Risk to mum.", "review_date": review_date}
    added = client.post(
        f"{path}/safeguarding-override", json=override, headers=_as(client, MANAGER)
    )
    assert added.status_code == 201, added.text
    before = client.get(path, headers=lead).json()
    service_client.stop(client)

    settings = settings_for("caseplan", database_url, kafka_bootstrap, tmp_path)
    rebuild_projections(definition, settings, ["chronology", "cases"])

    after = _client(service_client).get(path, headers=lead).json()
    assert after == before
    assert after["consent"]["status"] == "narrowed"
    assert [m["member_id"] for m in after["team"]] == [HEALTH, SCHOOL]
