"""The sharing rule on real deliveries (issue 14): restricted detail reaches an organisation
only while it is on the case's team and the case's consent (or a live override) stands,
asked again at every send; every disclosure is recorded for the data protection officer.

One service, four partners' receivers (processes of their own), many cases: each cell of
partner type x membership x consent x event type is checked on what arrived."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

from hub.contracts.codes import ConsentScope

from .conftest import HEALTH, POLICE, SCHOOL, SOCIAL_CARE, as_, referral, subscribe, wait_until
from .sharing import Case, open_deliveries, projected, rows
from .test_policy import (
    AS_SCHOOL_OF_A_PUPIL,
    HEALTH_WITH_CONSENT,
    POLICE_WITH_CONSENT,
    SOCIAL_CARE_WITH_CONSENT,
    leaf_paths,
)

DPO = "information-governance-officer"
DETAIL = ["earlyhelp.case.*", "earlyhelp.assessment.*", "earlyhelp.plan.*"]
# What a team member of each type may have under consent; a school has no such rule.
WITH_CONSENT = {
    HEALTH: HEALTH_WITH_CONSENT,
    POLICE: POLICE_WITH_CONSENT,
    SOCIAL_CARE: SOCIAL_CARE_WITH_CONSENT,
    SCHOOL: {},
}
MEMBERSHIPS = ("member", "not_member", "removed")
CONSENTS = ("given", "narrowed", "withdrawn", "override")
SHARE = ConsentScope.SHARE_WITH_PARTNERS


def _from_elsewhere(consent: str):
    """A referral by an organisation that subscribes to nothing; its consent covers sharing
    with partner agencies except where only an override is to let anything go."""
    covers = ["early_help_assessment"] + ([] if consent == "override" else [str(SHARE)])
    return referral(
        referrer="harlesden-food-bank", referrer_type="voluntary", upn=None, covers=covers
    )


def _setup(case: Case, membership: str, consent: str) -> list:
    events = [case.received, case.triaged()]
    if membership != "not_member":
        events += [case.member_added(who) for who in WITH_CONSENT]
    events += {
        "given": [],  # the referral's consent stands for the case its triage opened
        "narrowed": [case.consent_narrowed(ConsentScope.REFERRER_FEEDBACK)],
        "withdrawn": [case.consent_withdrawn()],
        "override": [case.override_recorded()],
    }[consent]
    if membership == "removed":
        events += [case.member_removed(who) for who in WITH_CONSENT]
    return events


def _detail(case: Case) -> list:
    return [case.allocated(), case.assessed(), case.reviewed(), case.stepped_up()]


def test_policy_matrix_partner_types_by_membership_by_consent_by_event_type(
    notifications, receiver, publish, database_url
):
    app = notifications()
    receivers = {who: receiver() for who in WITH_CONSENT}
    for who, target in receivers.items():
        subscribe(app, who, DETAIL, target)
    cases = {
        (membership, consent): Case(_from_elsewhere(consent))
        for membership in MEMBERSHIPS
        for consent in CONSENTS
    }
    for (membership, consent), case in cases.items():
        for event in _setup(case, membership, consent):
            publish(event)
    # The case's facts are known before anything happens under them.
    last = cases[("removed", "override")]
    wait_until(lambda: projected(database_url, "case_overrides", last.case_id) == 1)
    wait_until(
        lambda: (
            rows(
                database_url,
                "SELECT count(*) FROM team_members WHERE removed_at IS NOT NULL AND case_id = :c",
                c=str(last.case_id),
            )[0][0]
            == len(WITH_CONSENT)
        )
    )
    detail_types = {}
    for case in cases.values():
        events = _detail(case)
        detail_types[str(case.case_id)] = [event.event_type for event in events]
        for event in events:
            publish(event)

    def expected(who, membership, consent, event_type):
        if membership != "member" or consent not in ("given", "override"):
            return None
        return WITH_CONSENT[who].get(event_type)

    total = sum(
        expected(who, m, c, t) is not None
        for who in WITH_CONSENT
        for (m, c), case in cases.items()
        for t in detail_types[str(case.case_id)]
    )
    assert total == 2 * (4 + 3 + 4)  # health, police, social care; a school none
    arrived = lambda: sum(len(r.accepted()) for r in receivers.values())  # noqa: E731
    # Up to 90 s: at a load average of 30 the consumer group alone took longer than 30 s.
    wait_until(lambda: arrived() >= total, 90, message=f"{arrived()} of {total} arrived")
    # Everything fanned out and nothing left to send: what arrived is all that will.
    wait_until(
        lambda: (
            rows(database_url, "SELECT count(*) FROM event_journal WHERE NOT fanned_out")[0][0] == 0
            and open_deliveries(database_url) == 0
        )
    )
    for who, target in receivers.items():
        got = {
            (r["event"]["data"]["case_id"], r["event"]["type"]): r["event"]
            for r in target.accepted()
        }
        assert len(got) == len(target.accepted()), f"{who} received something twice"
        for (membership, consent), case in cases.items():
            for event_type in detail_types[str(case.case_id)]:
                cell = (who, membership, consent, event_type)
                fields = expected(*cell)
                sent = got.get((str(case.case_id), event_type))
                if fields is None:
                    assert sent is None, cell
                    continue
                assert sent is not None, cell
                assert sent["dataclassification"] == "restricted", cell
                assert leaf_paths(sent["data"]) == fields, cell
                assert str(case.family_id) not in str(sent), cell

    # Every restricted send is on the family's disclosure record, with its basis.
    for (membership, consent), case in cases.items():
        record = app.get(f"/v1/families/{case.family_id}/disclosures", headers=as_(app, DPO, None))
        assert record.status_code == 200, record.text
        items = record.json()["items"]
        sent = sum(
            expected(who, membership, consent, t) is not None
            for who in WITH_CONSENT
            for t in detail_types[str(case.case_id)]
        )
        assert len(items) == sent, (membership, consent)
        basis = "override" if consent == "override" else "consent"
        assert {i["basis"] for i in items} <= {basis}
        assert {i["partner_id"] for i in items} <= {HEALTH, POLICE, SOCIAL_CARE}
        assert all(i["rules"] == ["team_member_with_consent/case-detail"] for i in items)


def test_a_school_hears_only_of_the_case_that_records_it_never_through_a_upn(
    notifications, receiver, publish, database_url
):
    app = notifications()
    school = receiver()
    subscribe(app, SCHOOL, DETAIL, school)
    # The school referred a pupil once; health later refers a family with the same UPN:
    # that is not the school's case.
    publish(referral(upn="A123456789012"))
    elsewhere = Case(referral(referrer=HEALTH, referrer_type="health", upn="A123456789012"))
    recorded = Case(_from_elsewhere("given"))
    for event in [elsewhere.received, elsewhere.triaged(), recorded.received, recorded.triaged()]:
        publish(event)
    publish(recorded.school_recorded(SCHOOL))
    wait_until(lambda: projected(database_url, "case_schools", recorded.case_id) == 1)
    for case in (elsewhere, recorded):
        publish(case.allocated())
        publish(case.reviewed())
    wait_until(lambda: len(school.accepted()) >= 2)
    wait_until(lambda: open_deliveries(database_url) == 0 and len(school.accepted()) == 2)
    for r in school.accepted():
        event = r["event"]
        assert event["data"]["case_id"] == str(recorded.case_id)
        assert event["datacategory"] == "case-status"
        assert leaf_paths(event["data"]) == AS_SCHOOL_OF_A_PUPIL[event["type"]]


def _member_with_consent(publish, database_url, who=HEALTH):
    case = Case(_from_elsewhere("given"))
    for event in [case.received, case.triaged(), case.member_added(who)]:
        publish(event)
    wait_until(lambda: projected(database_url, "team_members", case.case_id) == 1)
    return case


def _deliveries(app, sub, who, **params):
    return app.get(
        f"/v1/subscriptions/{sub['subscription_id']}/deliveries",
        params=params,
        headers=as_(app, who),
    ).json()["items"]


def test_consent_withdrawn_while_a_delivery_is_retrying_withholds_it(
    notifications, receiver, publish, database_url
):
    app = notifications()
    health = receiver()
    sub = subscribe(app, HEALTH, DETAIL, health)
    case = _member_with_consent(publish, database_url)
    health.fail_next(10_000)
    publish(case.assessed())
    wait_until(lambda: [d for d in _deliveries(app, sub, HEALTH) if d["attempts"] >= 1])
    publish(case.consent_withdrawn())
    [withheld] = wait_until(lambda: _deliveries(app, sub, HEALTH, status="withheld"))
    health.fail_next(0)
    assert "family_id" not in withheld
    detail = app.get(
        f"/v1/subscriptions/{sub['subscription_id']}/deliveries/{withheld['delivery_id']}",
        headers=as_(app, HEALTH),
    ).json()
    assert detail["attempt_log"][-1]["outcome"] == "withheld"
    assert health.accepted() == []
    # What was attempted before the withdrawal reached the receiver (refused): recorded.
    record = app.get(f"/v1/families/{case.family_id}/disclosures", headers=as_(app, DPO, None))
    assert len(record.json()["items"]) == len(health.received) >= 1
    # A redelivery asks the policy again: still withheld, never sent.
    again = app.post(
        f"/v1/subscriptions/{sub['subscription_id']}/deliveries/{withheld['delivery_id']}"
        "/redeliver",
        headers=as_(app, HEALTH),
    )
    assert again.status_code == 202
    wait_until(lambda: _deliveries(app, sub, HEALTH, status="withheld"))
    assert health.accepted() == []


def test_replay_by_a_partner_that_joined_late_covers_only_its_membership(
    notifications, receiver, publish, database_url
):
    app = notifications()
    health = receiver()
    sub = subscribe(app, HEALTH, DETAIL, health)
    case = Case(_from_elsewhere("given"))
    for event in [case.received, case.triaged()]:
        publish(event)
    before_joining = case.assessed()
    publish(before_joining)
    wait_until(lambda: projected(database_url, "known_cases", case.case_id) == 1)
    publish(case.member_added(HEALTH))
    wait_until(lambda: projected(database_url, "team_members", case.case_id) == 1)
    after_joining = case.reviewed()
    publish(after_joining)
    wait_until(lambda: len(health.accepted()) == 1)
    replayed = app.post(
        f"/v1/subscriptions/{sub['subscription_id']}/replay",
        json={"since": "2020-01-01T00:00:00Z"},
        headers=as_(app, HEALTH),
    )
    assert replayed.status_code == 202 and replayed.json() == {"queued": 1}
    wait_until(lambda: len(health.accepted()) == 2)
    wait_until(lambda: open_deliveries(database_url) == 0)
    assert {r["event"]["type"] for r in health.accepted()} == {after_joining.event_type}
    # A subscription made now replays nothing from before it existed.
    late = receiver()
    newer = subscribe(app, HEALTH, DETAIL, late)
    again = app.post(
        f"/v1/subscriptions/{newer['subscription_id']}/replay",
        json={"since": "2020-01-01T00:00:00Z"},
        headers=as_(app, HEALTH),
    )
    assert again.status_code == 202 and again.json() == {"queued": 0}


def test_redeliver_after_the_member_was_removed_sends_nothing(
    notifications, receiver, publish, database_url
):
    app = notifications()
    police = receiver()
    sub = subscribe(app, POLICE, DETAIL, police)
    case = _member_with_consent(publish, database_url, who=POLICE)
    publish(case.assessed())
    wait_until(lambda: len(police.accepted()) == 1)
    [delivered] = wait_until(lambda: _deliveries(app, sub, POLICE, status="delivered"))
    publish(case.member_removed(POLICE))
    wait_until(
        lambda: (
            rows(
                database_url,
                "SELECT count(*) FROM team_members WHERE removed_at IS NOT NULL AND case_id = :c",
                c=str(case.case_id),
            )[0][0]
            == 1
        )
    )
    again = app.post(
        f"/v1/subscriptions/{sub['subscription_id']}/deliveries/{delivered['delivery_id']}"
        "/redeliver",
        headers=as_(app, POLICE),
    )
    assert again.status_code == 202
    wait_until(lambda: _deliveries(app, sub, POLICE, status="withheld"))
    assert len(police.accepted()) == 1
    # The one send stands on the family's record; the partner may not read it.
    record = app.get(f"/v1/families/{case.family_id}/disclosures", headers=as_(app, DPO, None))
    [disclosure] = record.json()["items"]
    assert disclosure["partner_id"] == POLICE and disclosure["basis"] == "consent"
    assert disclosure["case_id"] == str(case.case_id)
    assert "factors" in disclosure["fields"]
    assert record.json()["cases"] == [str(case.case_id)]
    refused = app.get(f"/v1/families/{case.family_id}/disclosures", headers=as_(app, POLICE))
    assert refused.status_code == 403
    audited = rows(
        database_url,
        "SELECT count(*) FROM audit_log WHERE resource_id = :family",
        family=str(case.family_id),
    )
    assert audited[0][0] >= 1


def test_a_new_case_of_the_family_starts_without_the_old_case_s_consent(
    notifications, receiver, publish, database_url
):
    app = notifications()
    health = receiver()
    subscribe(app, HEALTH, DETAIL, health)
    first = _member_with_consent(publish, database_url)
    # A later case of the same family, opened by a referral without consent to share.
    again = referral(
        referrer="harlesden-food-bank",
        referrer_type="voluntary",
        upn=None,
        covers=["early_help_assessment"],
    ).model_copy(update={"family_id": first.family_id, "referral_id": uuid4()})
    second = Case(again)
    for event in [again, second.triaged(), second.member_added(HEALTH)]:
        publish(event)
    wait_until(lambda: projected(database_url, "team_members", second.case_id) == 1)
    publish(second.assessed())
    publish(first.assessed())
    wait_until(lambda: len(health.accepted()) >= 1)
    wait_until(lambda: open_deliveries(database_url) == 0)
    wait_until(
        lambda: (
            rows(database_url, "SELECT count(*) FROM event_journal WHERE NOT fanned_out")[0][0] == 0
        )
    )
    assert [r["event"]["data"]["case_id"] for r in health.accepted()] == [str(first.case_id)]


def test_an_override_ended_or_past_its_review_date_lets_nothing_go(
    notifications, receiver, publish, database_url
):
    app = notifications()
    health = receiver()
    subscribe(app, HEALTH, DETAIL, health)
    lapsed, ended, live = (Case(_from_elsewhere("override")) for _ in range(3))
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    # Decided ten days ago, to be reviewed yesterday: it lapsed today, by the hub's clock.
    lapsed_override = lapsed.override_recorded(review_date=date.today() - timedelta(days=1))
    lapsed_override = lapsed_override.model_copy(update={"decided_at": ten_days_ago})
    decisions = {
        lapsed: [lapsed_override],
        ended: [ended.override_recorded(), ended.override_ended()],
        live: [live.override_recorded()],
    }
    for case, events in decisions.items():
        for event in [case.received, case.triaged(), case.member_added(HEALTH), *events]:
            publish(event)
    for case in decisions:
        wait_until(lambda case=case: projected(database_url, "case_overrides", case.case_id))
    wait_until(
        lambda: (
            rows(
                database_url,
                "SELECT count(*) FROM case_overrides WHERE state = 'ended' AND case_id = :c",
                c=str(ended.case_id),
            )[0][0]
            == 1
        )
    )
    for case in decisions:
        publish(case.assessed())
    wait_until(lambda: len(health.accepted()) >= 1)
    wait_until(
        lambda: (
            rows(database_url, "SELECT count(*) FROM event_journal WHERE NOT fanned_out")[0][0] == 0
            and open_deliveries(database_url) == 0
        )
    )
    assert [r["event"]["data"]["case_id"] for r in health.accepted()] == [str(live.case_id)]


def test_a_queued_partner_topic_record_is_withheld_once_consent_is_withdrawn(
    notifications, publish, database_url
):
    app = notifications()
    sub = subscribe(app, SOCIAL_CARE, DETAIL, "topic")
    path = f"/v1/subscriptions/{sub['subscription_id']}"
    case = _member_with_consent(publish, database_url, who=SOCIAL_CARE)
    # Paused: what the policy allowed queues, in order, until the partner resumes.
    paused = app.post(f"{path}/pause", headers=as_(app, SOCIAL_CARE))
    assert paused.status_code == 200
    publish(case.assessed())
    wait_until(lambda: _deliveries(app, sub, SOCIAL_CARE, status="pending"))
    publish(case.consent_withdrawn())
    wait_until(lambda: projected(database_url, "case_consents", case.case_id) == 1)
    assert app.post(f"{path}/resume", headers=as_(app, SOCIAL_CARE)).status_code == 200
    [withheld] = wait_until(lambda: _deliveries(app, sub, SOCIAL_CARE, status="withheld"))
    assert withheld["attempts"] == 0 and withheld["delivered_at"] is None
    record = app.get(f"/v1/families/{case.family_id}/disclosures", headers=as_(app, DPO, None))
    assert record.json()["items"] == []
