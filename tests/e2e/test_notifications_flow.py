"""A partner's referral reaching partners' webhooks through the whole hub.

The service processes, the broker and the partners' webhook receivers, each a
process of its own (`tests/webhook_receiver.py`, which verifies every Standard
Webhooks signature with the subscription's secret and records what it answered):

- a school subscribes, posts a referral, the front door triages it and a
  manager allocates the case; the school's receiver gets each step, signed, in
  order, with only what the school may see, and a health partner that is not on
  the case's team hears nothing of it, whatever the family's consent; the signing
  secrets are kept encrypted with the key `make run` generates;
- the notifications process is killed while it is retrying deliveries to a
  receiver that fails and then goes down itself; both come back and nothing is
  lost, nothing is sent under a second delivery id, each family's order holds.
"""

from __future__ import annotations

import json
import mailbox
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from hub.broker import EmbeddedBroker
from intake.schemas import TriageDecision
from notifications.fanout import pseudonym
from tests.e2e.support import accepted, post_referral, referral_body
from tests.harness import Hub, query, wait_for
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

SCHOOL, HEALTH = "harlesden-primary-school", "brent-health-visiting"
FRONT_DOOR, MANAGER = "front-door-demo", "harlesden-team-manager"
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
WAIT_S = 90.0  # a bound, not a pace: generous for a loaded machine
RECEIVED, TRIAGED = "earlyhelp.referral.received.v1", "earlyhelp.referral.triaged.v1"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    """One receiver process; each subscription has its own path (and secret) on it."""
    with WebhookReceiver(tmp_path / "receiver") as started:
        yield started


def subscribe(client, hub: Hub, who: str, receiver: WebhookReceiver, event_types) -> dict:
    created = client.post(
        f"{hub.url('notifications')}/v1/subscriptions",
        json={
            "event_types": event_types,
            "delivery": {"type": "webhook", "url": receiver.url(who)},
        },
        headers=hub.auth(who),
    )
    assert created.status_code == 201, created.text
    receiver.configure(who, secret=created.json()["secret"])
    return created.json()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_referral_reaches_partners_webhooks_signed_minimised_and_in_order(
    backend: str, module_bootstrap: str, start_hub, receiver, client: httpx.Client
) -> None:
    hub: Hub = start_hub(
        module_bootstrap,
        backend,
        # As `make run` has it: no keys configured, so one is generated into var/.
        extra_env={
            # The receivers are on this machine: the operator's allow-list lets them in.
            "EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "EARLYHELP_NOTIFICATIONS_SECRET_KEYS": "",
        },
    )
    secrets = {
        who: subscribe(client, hub, who, receiver, ["earlyhelp.referral.*", "earlyhelp.case.*"])[
            "secret"
        ]
        for who in (SCHOOL, HEALTH)
    }

    body = referral_body()
    referral = accepted(post_referral(client, hub, body), hub)
    intake, allocation = hub.url("intake"), hub.url("allocation")
    triaged = client.post(
        f"{intake}/v1/referrals/{referral.referral_id}/triage",
        json=DECISION,
        headers=hub.auth(FRONT_DOOR),
    )
    assert triaged.status_code == 200, triaged.text
    case_id = triaged.json()["triage"]["case_id"]

    def allocate() -> bool:
        response = client.post(
            f"{allocation}/v1/cases/{case_id}/allocation",
            json={"auto": True},
            headers=hub.auth(MANAGER) | {"Idempotency-Key": f"alloc-{case_id}"},
        )
        return response.status_code == 201

    wait_for(allocate, WAIT_S, lambda: f"never allocated\n{hub.logs_tail(['allocation'])}")
    wait_for(
        lambda: len(receiver.records(SCHOOL)) >= 3,
        WAIT_S,
        lambda: (
            f"school heard {len(receiver.records(SCHOOL))}\n" + hub.logs_tail(["notifications"])
        ),
    )

    school = receiver.records(SCHOOL)
    types = [r["event"]["type"] for r in school]
    assert types == [RECEIVED, TRIAGED, "earlyhelp.case.allocated.v1"]
    assert all(r["verified"] and r["status"] == 204 for r in school)
    assert len({r["webhook_id"] for r in school}) == 3
    assert school[0]["event"]["data"] == {
        "referral_id": referral.referral_id,
        "partner_reference": body["partner_reference"],
        "received_at": school[0]["event"]["data"]["received_at"],
        "urgency": body["urgency"],
    }
    assert school[2]["event"]["data"]["case_id"] == case_id
    sent = json.dumps([r["event"] for r in school])
    # (Family names can be a worker's too: the lead professional's name is shared.)
    for child in body["children"]:
        for detail in ("given_name", "date_of_birth", "nhs_number", "upn"):
            assert not child.get(detail) or child[detail] not in sent, detail

    # Health did not refer and is not on the case's team: consent alone shares nothing.
    assert receiver.records(HEALTH) == []

    # The referrer is e-mailed about triage and allocation: status, never the child.
    box = hub.workdir / "var" / "mailbox"
    wait_for(
        lambda: (box / "cur").exists() and len(list(mailbox.Maildir(box))) >= 3, WAIT_S, "no e-mail"
    )
    texts = " ".join(m.get_payload() for m in mailbox.Maildir(box))
    assert body["partner_reference"] in texts
    assert body["children"][0]["given_name"] not in texts

    # The secrets are stored encrypted, under the key generated into var/ (0600).
    key_file = hub.workdir / "var" / "notifications-secret-keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    fernet = Fernet(key_file.read_text().split()[0].encode())
    stored = query(
        hub.database_url("notifications"),
        "SELECT partner_id, secret_encrypted FROM subscriptions",
    )
    assert {
        row["partner_id"]: fernet.decrypt(row["secret_encrypted"]).decode() for row in stored
    } == (secrets)
    for row in stored:
        assert secrets[row["partner_id"]] not in row["secret_encrypted"]


def _deliveries(hub: Hub) -> list[dict]:
    return query(
        hub.database_url("notifications"),
        "SELECT message_id, event_id, event_type, family_id, status, attempts FROM deliveries",
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_notifications_killed_mid_retry_while_the_receiver_fails_and_goes_down_loses_nothing(
    backend: str,
    own_broker: EmbeddedBroker,
    start_hub,
    receiver: WebhookReceiver,
    client: httpx.Client,
) -> None:
    hub: Hub = start_hub(
        own_broker.bootstrap_servers,
        backend,
        services=("intake", "notifications"),
        extra_env={
            # The receivers are on this machine: the operator's allow-list lets them in.
            "EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
            "EARLYHELP_NOTIFICATIONS_RETRY_BASE_MS": "100",
            "EARLYHELP_NOTIFICATIONS_RETRY_MAX_DELAY_MS": "300",
            # The circuit stays closed, so attempts go on at the backoff's pace.
            "EARLYHELP_NOTIFICATIONS_CIRCUIT_FAILURE_THRESHOLD": "100000",
            # A delivery claimed when the process was killed is tried again after 2 s; an
            # attempt gives up after 1 s, long before its lease runs out.
            "EARLYHELP_NOTIFICATIONS_WEBHOOK_TIMEOUT_MS": "1000",
            "EARLYHELP_NOTIFICATIONS_DELIVERY_LEASE_MS": "2000",
            "EARLYHELP_NOTIFICATIONS_WORKER_POLL_MS": "50",
        },
    )
    subscribe(client, hub, SCHOOL, receiver, ["earlyhelp.referral.*"])
    first = accepted(post_referral(client, hub), hub)
    wait_for(
        lambda: [r for r in receiver.records(SCHOOL) if r["accepted"]],
        WAIT_S,
        lambda: hub.logs_tail(["notifications"]),
    )

    # From now on the receiver answers 503 to everything.
    receiver.configure(SCHOOL, fail_first=1_000_000)
    retried = accepted(post_referral(client, hub), hub)
    other = accepted(post_referral(client, hub), hub)
    triage = client.post(
        f"{hub.url('intake')}/v1/referrals/{retried.referral_id}/triage",
        json=DECISION,
        headers=hub.auth(FRONT_DOOR),
    )
    assert triage.status_code == 200, triage.text

    def retrying() -> list[dict]:
        deliveries = _deliveries(hub)
        waiting = [d for d in deliveries if d["status"] == "retrying"]
        tried = {d["family_id"] for d in waiting if d["attempts"] >= 2}
        queued = any(d["event_type"] == TRIAGED for d in deliveries)
        return waiting if queued and tried >= {retried.family_id, other.family_id} else []

    before = wait_for(retrying, WAIT_S, lambda: hub.logs_tail(["notifications"]))
    # The triage waits behind the family's referral, which is failing: never attempted.
    held = [d for d in _deliveries(hub) if d["event_type"] == TRIAGED]
    assert [d["attempts"] for d in held] == [0], held

    hub.kill_service("notifications")  # SIGKILL, mid-retry
    receiver.kill()  # and the receiver goes down too
    late = accepted(post_referral(client, hub), hub)  # consumed once notifications is back
    receiver.configure(SCHOOL, fail_first=0)
    receiver.start()
    hub.start_service("notifications")

    families = {first.family_id, retried.family_id, other.family_id, late.family_id}

    def everything_accepted() -> list[dict]:
        accepted_records = [r for r in receiver.records(SCHOOL) if r["accepted"]]
        events = {(r["event"]["partitionkey"], r["event"]["type"]) for r in accepted_records}
        wanted = {(pseudonym(SCHOOL, f), RECEIVED) for f in families} | {
            (pseudonym(SCHOOL, retried.family_id), TRIAGED)
        }
        return accepted_records if events >= wanted else []

    wait_for(everything_accepted, WAIT_S, lambda: hub.logs_tail(["notifications"]))
    wait_for(
        lambda: all(d["status"] == "delivered" for d in _deliveries(hub)),
        WAIT_S,
        "the service never recorded every delivery",
    )

    records = receiver.records(SCHOOL)
    assert all(r["verified"] for r in records)
    # One webhook-id per event, the same on every attempt before and after both restarts;
    # none accepted twice.
    ids: dict[str, set[str]] = {}
    for r in records:
        ids.setdefault(r["event"]["id"], set()).add(r["webhook_id"])
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len(ids) == 5
    accepted_ids = [r["webhook_id"] for r in records if r["accepted"]]
    assert len(accepted_ids) == len(set(accepted_ids)) == 5
    # The family's triage was never attempted before its referral was accepted.
    mine = [
        r for r in records if r["event"]["partitionkey"] == pseudonym(SCHOOL, retried.family_id)
    ]
    first_triage = next(i for i, r in enumerate(mine) if r["event"]["type"] == TRIAGED)
    assert any(r["accepted"] for r in mine[:first_triage])
    assert all(r["event"]["type"] == RECEIVED for r in mine[:first_triage])
    # The schedule survived the kill: the retried deliveries' attempts went on counting.
    after = {d["message_id"]: d["attempts"] for d in _deliveries(hub)}
    assert all(after[d["message_id"]] > d["attempts"] for d in before)
    assert len(after) == 5
