"""Webhooks through the real broker to real HTTP receivers (processes of their own): signed,
minimised, in order, retried, dead-lettered, redelivered, replayed, and never lost across a
restart of the receiver or of the service."""

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import AssessmentCompleted, CaseClosed
from hub.contracts.codes import ClosureReason
from hub.contracts.intake import ReferralTriaged
from hub.replay import rebuild_projections
from notifications.service import definition

from .conftest import (
    HEALTH,
    POLICE,
    SCHOOL,
    SOCIAL_CARE,
    all_fanned_out,
    as_,
    family_key,
    referral,
    subscribe,
    wait_until,
)
from .sharing import Case, projected

IN_ORDER = [
    "referral.received.v1",
    "referral.triaged.v1",
    "case.allocated.v1",
    "assessment.completed.v1",
]
ALL = ["earlyhelp.referral.*", "earlyhelp.case.*", "earlyhelp.assessment.*", "earlyhelp.panel.*"]


def case_events(received):
    """Triage, allocation and assessment of the referral's family, happening now."""
    case_id = uuid4()
    ids = {"family_id": received.family_id, "case_id": case_id}
    now = datetime.now(UTC)
    return [
        ReferralTriaged.example().model_copy(
            update={"referral_id": received.referral_id, "decided_at": now} | ids
        ),
        CaseAllocated.example().model_copy(update={"allocated_at": now} | ids),
        AssessmentCompleted.example().model_copy(update={"completed_at": now} | ids),
    ]


def types_of(requests):
    return [r["event"]["type"].split(".", 1)[1] for r in requests]


def test_each_partner_receives_signed_events_with_only_what_it_may_see(
    notifications, receiver, publish, database_url
):
    app = notifications()
    school, health, police, social_care = receiver(), receiver(), receiver(), receiver()
    subscribe(app, SCHOOL, ALL, school)
    subscribe(app, HEALTH, ALL, health)
    subscribe(app, POLICE, ["earlyhelp.case.allocated.v1"], police)
    # A social-care partner that subscribes to everything but is on no team.
    subscribe(app, SOCIAL_CARE, ALL, social_care)

    shared = referral(reference="HPS-2025-0117")
    # A family whose consent does not cover sharing: health hears it as its referrer only.
    private = referral(
        covers=["early_help_assessment"],
        upn=None,
        referrer="brent-health-visiting",
        referrer_type="health",
    )
    triaged, allocated, assessed = case_events(shared)
    # Health and police join the team around the shared family once its case is open: from
    # then on they hear of it, with the family's consent (the referral's, for its case).
    case = Case(shared, case_id=triaged.case_id)
    for event in [shared, triaged, case.member_added(HEALTH), case.member_added(POLICE)]:
        publish(event)
    wait_until(lambda: projected(database_url, "team_members", triaged.case_id) == 2)
    for event in [allocated, assessed, private, *case_events(private)]:
        publish(event)

    wait_until(lambda: len(school.accepted()) == 4, message="school")
    wait_until(lambda: len(health.accepted()) == 4 + 2, message="health")
    wait_until(lambda: len(police.accepted()) == 1, message="police")
    time.sleep(0.5)  # nothing more arrives

    assert social_care.received == []
    assert all(r["verified"] for r in school.received + health.received + police.received)
    s = school.accepted()
    assert types_of(s) == IN_ORDER
    assert {r["event"]["partitionkey"] for r in s} == {family_key(SCHOOL, shared.family_id)}
    assert str(shared.family_id) not in str(s)
    assert s[0]["event"]["data"] == {
        "referral_id": str(shared.referral_id),
        "partner_reference": "HPS-2025-0117",
        "received_at": s[0]["event"]["data"]["received_at"],
        "urgency": "routine",
    }
    assert s[3]["event"]["data"].keys() == {"case_id", "partner_reference", "completed_at"}
    assert s[3]["event"]["dataclassification"] == "confidential"
    assert s[3]["event"]["datacategory"] == "referral-status"
    assert len({r["headers"]["webhook-id"] for r in s}) == 4

    h = health.accepted()
    theirs = [r for r in h if r["event"]["partitionkey"] == family_key(HEALTH, private.family_id)]
    ours = [r for r in h if r["event"]["partitionkey"] == family_key(HEALTH, shared.family_id)]
    # The private family's referral is health's own: it hears it as the referrer only.
    assert {r["event"]["datacategory"] for r in theirs} == {"referral-status"}
    # Of the shared family, what happened since it joined the team: not the triage before.
    assert types_of(ours) == ["case.allocated.v1", "assessment.completed.v1"]
    assessment = ours[1]["event"]
    assert assessment["dataclassification"] == "restricted"
    assert "people" not in assessment["data"] and "views" not in assessment["data"]
    assert "Amira" not in str(h) and "9990000018" not in str(h)
    assert police.accepted()[0]["event"]["data"]["lead_professional"]["name"] == "Samira Okafor"


def test_failures_are_retried_under_one_webhook_id_in_family_order(
    notifications, receiver, publish
):
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ALL, school)
    school.fail_next(5)
    first, second = referral(), referral()
    for event in [first, second, *case_events(first), *case_events(second)]:
        publish(event)

    wait_until(lambda: len(school.accepted()) == 8, message="not everything arrived")
    for family in (first.family_id, second.family_id):
        mine = [
            r for r in school.accepted() if r["event"]["partitionkey"] == family_key(SCHOOL, family)
        ]
        assert types_of(mine) == IN_ORDER
    # Every request for one event carried the same webhook-id; each event one id.
    ids_by_event = {}
    for r in school.received:
        ids_by_event.setdefault(r["event"]["id"], set()).add(r["headers"]["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_event.values())
    assert len(school.received) == 8 + 5

    path = f"/v1/subscriptions/{sub['subscription_id']}/deliveries"

    def delivered():
        log = app.get(path, params={"status": "delivered"}, headers=as_(app, SCHOOL)).json()
        return log if len(log["items"]) == 8 else None

    # The receiver has them all; the service records its last attempts a moment later.
    log = wait_until(delivered, message="the delivery log never showed all eight")
    retried = [d for d in log["items"] if d["attempts"] > 1]
    assert retried and all(d["last_status_code"] == 204 for d in retried)
    detail = app.get(f"{path}/{retried[0]['delivery_id']}", headers=as_(app, SCHOOL)).json()
    assert [a["status_code"] for a in detail["attempt_log"]][-1] == 204
    assert 503 in [a["status_code"] for a in detail["attempt_log"]]
    assert all(a["latency_ms"] >= 0 for a in detail["attempt_log"])


def test_every_delivery_failing_its_first_attempts_still_arrives_once_in_family_order(
    notifications, receiver, publish
):
    app = notifications()
    school = receiver()
    subscribe(app, SCHOOL, ALL, school)
    school.fail_each(2)  # every delivery: 503, 503, then 204
    families = [referral() for _ in range(4)]
    published = {}  # event id -> (family, its place in the family's order)
    for received in families:
        for place, event in enumerate([received, *case_events(received)]):
            event_id = str(uuid4())
            published[event_id] = (str(received.family_id), place)
            publish(event, event_id=event_id)

    wait_until(lambda: len(school.accepted()) == 16, message="not everything arrived")
    time.sleep(0.3)  # nothing more arrives
    records = school.received
    assert all(r["verified"] for r in records)
    # Every event arrived, once; each was tried three times under one webhook-id of its own.
    assert sorted(r["event"]["id"] for r in school.accepted()) == sorted(published)
    ids = {}
    for r in records:
        ids.setdefault(r["event"]["id"], []).append(r["webhook_id"])
    assert all(len(tried) == 3 and len(set(tried)) == 1 for tried in ids.values()), ids
    assert len({tried[0] for tried in ids.values()}) == 16
    # Per family, nothing was even tried before everything before it had been accepted.
    done = {str(f.family_id): 0 for f in families}
    for r in records:
        family, place = published[r["event"]["id"]]
        assert place == done[family], f"{r['event']['type']} tried out of order"
        done[family] += r["accepted"]
    assert set(done.values()) == {4}


def test_a_receiver_that_goes_down_and_comes_back_loses_nothing(notifications, receiver, publish):
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ALL, school)
    earlier = referral()
    for event in [earlier, *case_events(earlier)]:
        publish(event)
    wait_until(lambda: len(school.accepted()) == 4, message="nothing arrived before the crash")
    school.down()  # the receiver's process is killed
    received = referral()
    for event in [received, *case_events(received)]:
        publish(event)
    path = f"/v1/subscriptions/{sub['subscription_id']}/deliveries"

    def retrying():
        items = app.get(path, headers=as_(app, SCHOOL)).json()["items"]
        return [d for d in items if d["status"] == "retrying" and d["attempts"] >= 2]

    failing = wait_until(retrying, message="the first delivery was never retried")
    assert "ConnectError" in failing[0]["last_error"]
    school.up()  # a new process on the same port
    wait_until(lambda: len(school.accepted()) == 8, message="not everything arrived")
    time.sleep(0.3)  # nothing more arrives
    for family in (earlier.family_id, received.family_id):
        mine = [
            r for r in school.accepted() if r["event"]["partitionkey"] == family_key(SCHOOL, family)
        ]
        assert types_of(mine) == IN_ORDER
    assert len(school.received) == 8  # nothing answered before the crash came again
    assert len({r["headers"]["webhook-id"] for r in school.received}) == 8


def test_dead_letters_are_listed_redelivered_and_replayed(notifications, receiver, publish):
    app = notifications(retry_for_seconds=0.3)
    school = receiver()
    sub = subscribe(app, SCHOOL, ["earlyhelp.referral.received.v1"], school)
    school.fail_next(10_000, status=500)
    before = datetime.now(UTC) - timedelta(seconds=1)
    received = referral()
    publish(received)
    path = f"/v1/subscriptions/{sub['subscription_id']}"

    def dead():
        return app.get(
            f"{path}/deliveries", params={"status": "failed"}, headers=as_(app, SCHOOL)
        ).json()["items"]

    [letter] = wait_until(dead, message="never dead-lettered")
    assert letter["last_status_code"] == 500 and letter["next_attempt_at"] is None
    school.fail_next(0)
    again = app.post(
        f"{path}/deliveries/{letter['delivery_id']}/redeliver", headers=as_(app, SCHOOL)
    )
    assert again.status_code == 202 and again.json()["status"] == "pending"
    wait_until(lambda: len(school.accepted()) == 1, message="redelivery never arrived")
    wait_until(
        lambda: app.get(
            f"{path}/deliveries", params={"status": "delivered"}, headers=as_(app, SCHOOL)
        ).json()["items"],
        message="the redelivery was never recorded",
    )

    replayed = app.post(
        f"{path}/replay", json={"since": before.isoformat()}, headers=as_(app, SCHOOL)
    )
    assert replayed.status_code == 202 and replayed.json() == {"queued": 1}
    wait_until(lambda: len(school.accepted()) == 2, message="replay never arrived")
    first, second = school.accepted()
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["event"] == second["event"]


def test_a_dead_endpoint_s_circuit_opens_and_the_others_are_not_held_up(
    notifications, receiver, publish
):
    # One attempt in flight per endpoint, so that exactly two fail before the circuit opens.
    app = notifications(
        circuit_failure_threshold=2, circuit_cooldown_ms=60_000, endpoint_max_in_flight=1
    )
    dead, alive = receiver(), receiver()
    dead_sub = subscribe(app, SCHOOL, ["earlyhelp.referral.received.v1"], dead)
    subscribe(app, HEALTH, ["earlyhelp.referral.received.v1"], alive)
    dead.down()
    # More families wait for the dead endpoint than the worker claims in one round.
    families = [referral() for _ in range(40)]
    families += [referral(referrer=HEALTH, referrer_type="health") for _ in range(3)]
    for event in families:
        publish(event)

    wait_until(
        lambda: len(alive.accepted()) == 3, timeout_s=10, message="the live receiver was held up"
    )
    metric = f'earlyhelp_webhook_circuit_open{{endpoint="http://127.0.0.1:{dead.port}"}} 1.0'
    wait_until(lambda: metric in app.get("/metrics").text, message="circuit never opened")
    path = f"/v1/subscriptions/{dead_sub['subscription_id']}/deliveries"
    time.sleep(0.5)
    items = app.get(path, headers=as_(app, SCHOOL)).json()["items"]
    # Two failures opened the circuit; the other families' deliveries were never tried.
    assert sum(d["attempts"] for d in items) == 2
    assert len(items) == 40
    assert "earlyhelp_webhook_backlog" in app.get("/metrics").text


def test_a_restart_mid_retry_loses_nothing(notifications, receiver, publish):
    app = notifications(retry_base_ms=300, retry_max_delay_ms=300)
    school = receiver()
    sub = subscribe(app, SCHOOL, ALL, school)
    school.down()
    received = referral()
    for event in [received, *case_events(received)]:
        publish(event)
    path = f"/v1/subscriptions/{sub['subscription_id']}/deliveries"

    def attempted():
        items = app.get(path, headers=as_(app, SCHOOL)).json()["items"]
        return len(items) == 4 and any(d["attempts"] >= 1 for d in items)

    wait_until(attempted, message="nothing was attempted")
    notifications.stop(app)
    school.up()
    restarted = notifications()
    wait_until(lambda: len(school.accepted()) == 4, message="lost across the restart")
    assert types_of(school.accepted()) == IN_ORDER
    assert restarted.get(path, headers=as_(restarted, SCHOOL)).status_code == 200
    time.sleep(0.3)  # nothing more arrives
    assert len(school.received) == 4
    assert len({r["headers"]["webhook-id"] for r in school.received}) == 4

    def recorded():
        items = restarted.get(path, headers=as_(restarted, SCHOOL)).json()["items"]
        return items if {d["status"] for d in items} == {"delivered"} else None

    # The retry schedule was the database's: the attempts before the restart still count.
    items = wait_until(recorded, message="the deliveries were never recorded")
    assert max(d["attempts"] for d in items) >= 2


def test_a_paused_subscription_queues_in_order_until_resumed(notifications, receiver, publish):
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ALL, school)
    path = f"/v1/subscriptions/{sub['subscription_id']}"
    app.post(f"{path}/pause", headers=as_(app, SCHOOL))
    received = referral()
    for event in [received, *case_events(received)]:
        publish(event)
    wait_until(
        lambda: app.get(path, headers=as_(app, SCHOOL)).json()["backlog"] == 4,
        message="nothing queued",
    )
    assert school.received == []
    app.post(f"{path}/resume", headers=as_(app, SCHOOL))
    wait_until(lambda: len(school.accepted()) == 4, message="nothing arrived after resuming")
    assert types_of(school.accepted())[0] == "referral.received.v1"


def test_an_endpoint_answering_410_gone_pauses_its_subscription_and_loses_nothing(
    notifications, receiver, publish
):
    app = notifications()
    gone, other = receiver(), receiver()
    sub = subscribe(app, SCHOOL, ALL, gone)
    subscribe(app, SCHOOL, ALL, other)
    path = f"/v1/subscriptions/{sub['subscription_id']}"
    gone.fail_next(1, status=410)
    received = referral()
    for event in [received, *case_events(received)]:
        publish(event)

    def paused():
        view = app.get(path, headers=as_(app, SCHOOL)).json()
        return view if view["status"] == "paused" else None

    view = wait_until(paused, message="the subscription was never paused")
    assert view["paused_reason"] == "endpoint_gone"
    # The other subscription, on another endpoint, goes on.
    wait_until(lambda: len(other.accepted()) == 4, message="the other endpoint got nothing")
    assert types_of(other.accepted()) == IN_ORDER
    # Nothing more is sent to the gone endpoint, and nothing is dropped.
    time.sleep(0.5)
    assert [r["status"] for r in gone.received] == [410]
    assert app.get(path, headers=as_(app, SCHOOL)).json()["backlog"] == 4
    attempts = app.get(f"{path}/deliveries", headers=as_(app, SCHOOL)).json()["items"]
    assert sorted(d["status"] for d in attempts) == ["pending"] * 4

    resumed = app.post(f"{path}/resume", headers=as_(app, SCHOOL)).json()
    assert (resumed["status"], resumed["paused_reason"]) == ("active", None)
    wait_until(lambda: len(gone.accepted()) == 4, message="nothing arrived after resuming")
    assert types_of(gone.accepted()) == IN_ORDER
    assert len({r["headers"]["webhook-id"] for r in gone.accepted()}) == 4
    assert gone.received[0]["headers"]["webhook-id"] == gone.accepted()[0]["headers"]["webhook-id"]


def test_a_rotated_secret_and_the_old_one_both_sign_during_the_grace_period(
    notifications, receiver, publish
):
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ["earlyhelp.referral.received.v1"], school)
    old = school.secret
    rotated = app.post(
        f"/v1/subscriptions/{sub['subscription_id']}/secret/rotate", headers=as_(app, SCHOOL)
    ).json()
    publish(referral())
    wait_until(lambda: len(school.accepted()) == 1, message="not delivered with the old secret")
    school.secret = rotated["secret"]
    publish(referral())
    wait_until(lambda: len(school.accepted()) == 2, message="not delivered with the new secret")
    assert old != rotated["secret"]
    assert len(school.received[-1]["headers"]["webhook-signature"].split()) == 2


def test_a_rebuilt_read_model_sends_nothing_twice(notifications, receiver, publish, database_url):
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ALL, school)
    received = referral()
    for event in [received, *case_events(received)]:
        publish(event)
    wait_until(lambda: len(school.accepted()) == 4, message="not everything arrived")
    settings = app.settings
    notifications.stop(app)

    # The journal and the facts are rebuilt from the topics, as `earlyhelp rebuild` does.
    counts = rebuild_projections(definition, settings, ["referral_feedback"])
    assert counts["referral_feedback"] >= 4
    again = notifications()
    path = f"/v1/subscriptions/{sub['subscription_id']}/deliveries"
    wait_until(
        lambda: again.get(path, headers=as_(again, SCHOOL)).json()["items"],
        message="the rebuilt service lost the delivery log",
    )
    wait_until(
        lambda: all_fanned_out(database_url, received.family_id),
        message="the rebuilt journal was never fanned out",
    )
    time.sleep(0.3)  # deliveries it would have made are due at once; none may come
    assert len(school.received) == 4
    items = again.get(path, headers=as_(again, SCHOOL)).json()["items"]
    assert [d["status"] for d in items] == ["delivered"] * 4


def test_overrides_and_withdrawn_consent_decide_what_a_team_member_hears(
    notifications, receiver, publish, database_url
):
    """(The rule per family this replaced let any health partner hear of any family with
    consent; see test_sharing_rule.py for the whole matrix.)"""
    app = notifications()
    health = receiver()
    subscribe(app, HEALTH, ["earlyhelp.case.*", "earlyhelp.plan.*"], health)

    # Police refer without consent but with a safeguarding override; consent on another
    # case that the family later withdraws by closing the case.
    overridden = Case(
        referral(
            referrer=POLICE,
            referrer_type="police",
            upn=None,
            covers=["early_help_assessment"],
            override=True,
        )
    )
    withdrawn = Case(referral(referrer=POLICE, referrer_type="police", upn=None))
    for case in (overridden, withdrawn):
        for event in [case.received, case.triaged(), case.member_added(HEALTH)]:
            publish(event)
        wait_until(lambda case=case: projected(database_url, "team_members", case.case_id) == 1)
        publish(case.allocated())

    def cases(receiver):
        return {
            (r["event"]["data"]["case_id"], r["event"]["datacategory"]) for r in receiver.accepted()
        }

    wait_until(lambda: len(health.accepted()) >= 2)
    closed = CaseClosed.example().model_copy(
        update={
            "reason": ClosureReason.CONSENT_WITHDRAWN,
            "outcomes": (),
            "closed_at": datetime.now(UTC),
            "family_id": withdrawn.family_id,
            "case_id": withdrawn.case_id,
        }
    )
    # Once consent is withdrawn nothing more is shared under it, the closure included.
    publish(closed)
    wait_until(lambda: all_fanned_out(database_url, withdrawn.family_id))
    time.sleep(0.5)  # delivery: nothing else arrives
    assert cases(health) == {
        (str(overridden.case_id), "case-detail"),
        (str(withdrawn.case_id), "case-detail"),
    }
    assert not [r for r in health.received if r["event"]["type"] == CaseClosed.event_type]
