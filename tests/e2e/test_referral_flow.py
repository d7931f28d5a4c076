"""A referral's way through the whole hub, on one hub per backend shared by the module.

Four service processes, their own databases and the broker: a partner posts a
referral to intake and it reaches allocation, caseplan and notifications through
Kafka only, exactly once, however the request or the record is repeated. A health
visitor's FHIR referral runs the same way, and its Task follows it to allocation. A
police force's Operation Encompass notification reaches each child's school, is
acknowledged, and is counted in case plan's report.
"""

from __future__ import annotations

import json
import mailbox
import re
from uuid import uuid4

import httpx
import pytest
from kafka import KafkaProducer

from intake.fhir_mapping import example
from intake.schemas import PoliceNotificationSubmission, TriageDecision
from tests.e2e.support import (
    CONSUMERS,
    INTAKE_DLQ,
    INTAKE_TOPIC,
    ONE_REFERRAL,
    accepted,
    assert_exactly_once,
    ce_id,
    chronology,
    consumed,
    growth,
    intake_event_ids,
    post_referral,
    read_topic,
    referral_body,
    totals,
    wait_everywhere,
    wait_settled,
)
from tests.harness import Hub, query, read_table, wait_for

pytestmark = pytest.mark.e2e

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

PROBLEM_JSON = "application/problem+json"


def test_a_referral_reaches_every_service(hub: Hub, client: httpx.Client) -> None:
    body = referral_body()
    referral = accepted(post_referral(client, hub, body), hub)
    assert referral.location == f"/v1/referrals/{referral.referral_id}"

    view = client.get(hub.url("intake") + referral.location, headers=hub.auth())
    assert view.status_code == 200, view.text
    # The referrer's view: nothing about the family beyond its referral (issue 14).
    assert view.json() | {"received_at": None} == {
        "referral_id": referral.referral_id,
        "status": "received",
        "received_at": None,
        "urgency": body["urgency"],
        "referral_source": body["referral_source"],
        "partner_reference": body["partner_reference"],
        "police_notification": None,
        # Nothing decided yet: no triage outcome, allocation, closure or withdrawal to report.
        "triage": None,
        "allocation": None,
        "closure": None,
        "withdrawal": None,
    }

    wait_everywhere(hub, [referral])
    wait_settled(hub)
    (event_id,) = intake_event_ids(hub, [referral])[referral.referral_id]

    (incoming,) = read_table(
        hub.database_url("allocation"), "incoming_referrals", referral_id=referral.referral_id
    )
    assert incoming["family_id"] == referral.family_id
    assert incoming["urgency"] == body["urgency"]
    assert incoming["children_count"] == len(body["children"])
    postcode = body["children"][0]["address"]["postcode"]
    assert incoming["postcode_district"] == postcode.split()[0]

    (feedback,) = read_table(
        hub.database_url("notifications"), "referral_feedback", referral_id=referral.referral_id
    )
    assert feedback["family_id"] == referral.family_id
    assert feedback["referrer_organisation_id"] == body["referrer"]["organisation_id"]
    assert feedback["last_event_type"] == "earlyhelp.referral.received.v1"

    (entry,) = chronology(client, hub, referral.family_id)
    assert entry["event_id"] == event_id  # the id intake stored, carried through Kafka
    assert entry["event_type"] == "earlyhelp.referral.received.v1"
    assert entry["service"] == "intake"
    assert entry["subject"] == referral.referral_id
    assert entry["occurred_at"] and entry["recorded_at"]

    for service, projections in (
        # Allocation's queue follows the referral too: it completes a case triaged first.
        ("allocation", ["allocation_queue", "incoming_referrals"]),
        ("caseplan", ["chronology"]),
        ("notifications", ["referral_feedback"]),
    ):
        handled = read_table(hub.database_url(service), "inbox", event_id=event_id)
        assert sorted(row["projection"] for row in handled) == projections

    assert_exactly_once(client, hub, [referral])


def test_idempotency_key_replays_the_first_response_and_refuses_another_body(
    hub: Hub, client: httpx.Client
) -> None:
    wait_settled(hub)
    before = totals(hub)
    key = f"e2e-{uuid4()}"
    body = referral_body()

    first = post_referral(client, hub, body, key=key)
    second = post_referral(client, hub, body, key=key)
    referral = accepted(first, hub)
    assert second.status_code == 202
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"] == referral.location
    assert second.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers

    wait_everywhere(hub, [referral])
    wait_settled(hub)
    assert_exactly_once(client, hub, [referral])
    after_first = totals(hub)
    assert growth(before, after_first) == ONE_REFERRAL | {"intake.idempotency_keys": 1}

    other = post_referral(client, hub, referral_body(), key=key)
    assert other.status_code == 422, other.text
    assert other.headers["content-type"].startswith(PROBLEM_JSON)
    problem = other.json()
    assert problem["status"] == 422
    assert problem["type"].endswith("/idempotency-key-reused")
    assert totals(hub) == after_first

    # A referral posted after the refused one is a barrier: once it is everywhere and
    # every record is committed, anything the refused request had published would be too.
    marker = accepted(post_referral(client, hub), hub)
    wait_everywhere(hub, [marker])
    wait_settled(hub)
    assert growth(after_first, totals(hub)) == ONE_REFERRAL


@sqlite_only
def test_an_invalid_referral_is_refused_naming_every_field_and_stores_nothing(
    hub: Hub, client: httpx.Client
) -> None:
    wait_settled(hub)
    before = totals(hub)

    body = referral_body(urgency="whenever")
    body["children"][0]["nhs_number"] = "9990000019"  # fails the modulus 11 check digit
    body["children"][1]["address"]["postcode"] = "NOT A POSTCODE"
    body["household_members"][0]["date_of_birth"] = "yesterday"
    response = post_referral(client, hub, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["status"] == 422
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {
        "urgency",
        "children[0].nhs_number",
        "children[1].address.postcode",
        "household_members[0].date_of_birth",
    }, problem
    for value in ("9990000019", "NOT A POSTCODE", "yesterday", "whenever"):
        assert value not in response.text, "a problem must not quote what was submitted"

    no_children = referral_body()
    del no_children["children"]
    response = post_referral(client, hub, no_children, key=f"e2e-{uuid4()}")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert [error["field"] for error in response.json()["errors"]] == ["children"]

    assert totals(hub) == before, "a refused referral left something behind"

    marker = accepted(post_referral(client, hub), hub)
    wait_everywhere(hub, [marker])
    wait_settled(hub)
    assert growth(before, totals(hub)) == ONE_REFERRAL


@sqlite_only
def test_a_record_delivered_again_has_no_second_effect(hub: Hub, client: httpx.Client) -> None:
    referral = accepted(post_referral(client, hub), hub)
    wait_everywhere(hub, [referral])
    wait_settled(hub)
    (event_id,) = intake_event_ids(hub, [referral])[referral.referral_id]

    def snapshot() -> dict:
        return {
            "incoming": read_table(
                hub.database_url("allocation"),
                "incoming_referrals",
                referral_id=referral.referral_id,
            ),
            "feedback": read_table(
                hub.database_url("notifications"),
                "referral_feedback",
                referral_id=referral.referral_id,
            ),
            "chronology": chronology(client, hub, referral.family_id),
            **{
                f"{s}.inbox": query(
                    hub.database_url(s), "SELECT * FROM inbox WHERE event_id = :e", e=event_id
                )
                for s in CONSUMERS
            },
            "totals": totals(hub),
        }

    before = snapshot()
    duplicates_before = {s: consumed(hub, s, "duplicate") for s in CONSUMERS}
    dead_before = {s: consumed(hub, s, "dead_lettered") for s in CONSUMERS}

    (original,) = [
        r for r in read_topic(hub.bootstrap_servers, INTAKE_TOPIC) if ce_id(r) == event_id
    ]
    producer = KafkaProducer(bootstrap_servers=hub.bootstrap_servers, acks="all")
    try:
        copy = producer.send(
            INTAKE_TOPIC,
            key=original.key,
            value=original.value,
            headers=list(original.headers),
        ).get(timeout=10)
    finally:
        producer.close(timeout=5)
    assert copy.partition == original.partition  # same key, same partition: a redelivery
    assert copy.offset > original.offset

    for service in CONSUMERS:
        wait_for(
            lambda service=service: (
                consumed(hub, service, "duplicate") == duplicates_before[service] + 1
            ),
            30,
            lambda service=service: f"{service} never saw the copy\n" + hub.logs_tail([service]),
        )
    wait_settled(hub)
    assert snapshot() == before
    assert {s: consumed(hub, s, "dead_lettered") for s in CONSUMERS} == dead_before
    assert_exactly_once(client, hub, [referral])


@sqlite_only
def test_a_poison_record_is_dead_lettered_by_every_consumer_and_the_flow_goes_on(
    hub: Hub, client: httpx.Client
) -> None:
    key = f"poison-{uuid4()}".encode()
    producer = KafkaProducer(bootstrap_servers=hub.bootstrap_servers, acks="all")
    try:
        poison = producer.send(
            INTAKE_TOPIC, key=key, value=b"\x00\xffnot json", headers=[("ce_id", b"nonsense")]
        ).get(timeout=10)
    finally:
        producer.close(timeout=5)

    groups = {f"earlyhelp-{s}" for s in CONSUMERS}

    def parked() -> list[dict[str, bytes]]:
        return [
            dict(record.headers)
            for record in read_topic(hub.bootstrap_servers, INTAKE_DLQ)
            if record.key == key
        ]

    wait_for(
        lambda: {h["dlq_consumer"].decode() for h in parked()} == groups,
        30,
        lambda: (
            f"dead-lettered by {[h['dlq_consumer'] for h in parked()]}, expected {groups}\n"
            + hub.logs_tail(list(CONSUMERS))
        ),
    )
    wait_settled(hub)  # each group committed past the poison record
    copies = parked()
    assert sorted(h["dlq_consumer"].decode() for h in copies) == sorted(groups)  # once each
    for headers in copies:
        assert headers["dlq_reason"].decode().startswith("undecodable"), headers
        assert headers["dlq_original_topic"].decode() == INTAKE_TOPIC
        assert headers["dlq_original_partition"].decode() == str(poison.partition)
        assert headers["dlq_original_offset"].decode() == str(poison.offset)
        assert headers["dlq_attempts"] == b"1"

    referral = accepted(post_referral(client, hub), hub)
    wait_everywhere(hub, [referral])
    wait_settled(hub)
    assert_exactly_once(client, hub, [referral])


POLICE_NOTIFICATION = PoliceNotificationSubmission.model_config["json_schema_extra"]["examples"][0]
HARLESDEN_DSL = "dsl@harlesden-primary.example.org"
ST_MARYS_DSL = "safeguarding@st-marys-primary.example.org"


def test_a_police_notification_reaches_each_childs_school_alone_and_is_counted(
    hub: Hub, client: httpx.Client
) -> None:
    """Issue 22's "done when": two children at two schools, each school's safeguarding
    lead told of its own pupil only, before the next school day; acknowledged (by the
    school's system, and by the front door for the school it telephoned); counted."""
    notified = client.post(
        hub.url("intake") + "/v1/police-notifications",
        json=POLICE_NOTIFICATION,
        headers=hub.auth("met-police-brent"),
    )
    assert notified.status_code == 202, notified.text
    amira, yusuf = notified.json()["notices"]
    box = hub.workdir / "var" / "mailbox"

    def mail_to(recipient: str) -> list:
        if not (box / "cur").exists():  # the last a new Maildir makes
            return []
        return [
            m.get_payload(decode=True).decode()
            for m in mailbox.Maildir(box)
            if m["To"] == recipient
        ]

    wait_for(
        lambda: mail_to(HARLESDEN_DSL) and mail_to(ST_MARYS_DSL),
        90.0,
        lambda: hub.logs_tail(["intake", "notifications"]),
    )
    [to_harlesden], [to_st_marys] = mail_to(HARLESDEN_DSL), mail_to(ST_MARYS_DSL)
    assert "Amira Hassan" in to_harlesden and "Yusuf" not in to_harlesden
    assert "Yusuf Hassan" in to_st_marys and "Amira" not in to_st_marys
    for text in (to_harlesden, to_st_marys):
        assert "Craven Park" not in text and "verbal argument" not in text

    # (These processes run on the real clock: whether each acknowledgement is in time
    # depends on when the test runs, so it is counted either way.)
    done = client.post(
        hub.url("intake") + f"/v1/encompass-notices/{amira['notice_id']}/acknowledgement",
        headers=hub.auth("harlesden-primary-school"),
    )
    assert done.status_code == 200, done.text
    # St Mary's has no system on the hub. On the embedded default the link key is generated
    # into the hub's var/, which intake and notifications share: its safeguarding lead
    # presses the e-mail's link. With no key configured (PostgreSQL here) the e-mail has
    # no link, and the front door records that it telephoned the school.
    links = re.findall(r"^http\S+/acknowledgement-link\?\S+$", to_st_marys, re.MULTILINE)
    if hub.backend == "sqlite":
        [link] = links
        assert f"/encompass-notices/{yusuf['notice_id']}/" in link
        assert "I have read the notice" in client.get(link).text
        pressed = client.post(link)
        assert pressed.status_code == 200 and "is acknowledged" in pressed.text, pressed.text
    else:
        assert links == []
        told = client.post(
            hub.url("intake") + f"/v1/encompass-notices/{yusuf['notice_id']}/acknowledgement",
            headers=hub.auth("front-door-demo"),
        )
        assert told.status_code == 200, told.text

    def answered(school: dict) -> int:
        return school["acknowledged_in_time"] + school["late"]

    def counted() -> dict | None:
        report = client.get(
            hub.url("caseplan") + "/v1/reports/performance",
            headers=hub.auth("early-help-service-manager"),
        ).json()["encompass"]
        schools = report["by_school"] if report else {}
        return schools if sum(answered(s) for s in schools.values()) == 2 else None

    by_school = wait_for(counted, 90.0, lambda: hub.logs_tail(["caseplan"]))
    assert set(by_school) == {"harlesden-primary-school", "st-marys-primary"}
    assert all(s["sent"] == 1 and answered(s) == 1 for s in by_school.values())


@sqlite_only
def test_a_fhir_referral_runs_through_the_hub_and_its_task_follows_it(
    hub: Hub, client: httpx.Client
) -> None:
    """Issue 20: a FHIR message from a health visitor becomes a referral like a JSON one:
    triaged, queued and allocated, on the family's chronology; the health visitor reads
    its Task move from received to accepted to in progress, with the lead professional."""
    intake, allocation, caseplan = (hub.url(s) for s in ("intake", "allocation", "caseplan"))
    health = hub.auth("brent-health-visiting")
    sent = client.post(
        f"{intake}/fhir/$process-message",
        content=json.dumps(example("health-visitor-message.json")),
        headers=health | {"Content-Type": "application/fhir+json"},
    )
    assert sent.status_code == 202, sent.text
    referral_id = sent.json()["entry"][1]["resource"]["id"]

    def task() -> dict:
        answer = client.get(f"{intake}/fhir/Task/{referral_id}", headers=health)
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert task()["status"] == "received"
    triaged = client.post(
        f"{intake}/v1/referrals/{referral_id}/triage",
        json=TriageDecision.model_config["json_schema_extra"]["examples"][0],
        headers=hub.auth("front-door-demo"),
    )
    assert triaged.status_code == 200, triaged.text
    case_id, family_id = triaged.json()["triage"]["case_id"], triaged.json()["family_id"]
    assert task()["status"] == "accepted"

    manager = hub.auth("early-help-service-manager")

    def queued() -> bool:
        page = client.get(
            f"{allocation}/v1/allocations",
            params={"status": "unallocated", "limit": 200},
            headers=manager,
        ).json()
        return any(item["case_id"] == case_id for item in page["items"])

    wait_for(queued, 90.0, lambda: hub.logs_tail(["allocation"]))
    allocated = client.post(
        f"{allocation}/v1/cases/{case_id}/allocation", json={"auto": True}, headers=manager
    )
    assert allocated.status_code == 201, allocated.text
    lead = allocated.json()["lead_professional"]
    in_progress = wait_for(
        lambda: (t := task())["status"] == "in-progress" and t,
        90.0,
        lambda: hub.logs_tail(["intake"]),
    )
    assert in_progress["owner"]["display"] == lead["name"]

    def on_chronology() -> list[str] | None:
        answer = client.get(f"{caseplan}/v1/families/{family_id}/chronology", headers=manager)
        types = [e["event_type"] for e in answer.json().get("entries", [])]
        return types if "earlyhelp.case.allocated.v1" in types else None

    types = wait_for(on_chronology, 90.0, lambda: hub.logs_tail(["caseplan"]))
    assert {"earlyhelp.referral.received.v1", "earlyhelp.referral.triaged.v1"} <= set(types)
