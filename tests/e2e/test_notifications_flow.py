"""A partner's referral reaching partners' webhooks through the whole hub.

The four service processes and the broker: a school subscribes, posts a
referral, the front door triages it and a manager allocates the case; the
school's receiver gets each step, signed, in order, with only what the school
may see, and a health partner hears of the case under the family's consent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import mailbox
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from hub.broker import free_port
from intake.schemas import TriageDecision
from tests.e2e.support import accepted, post_referral, referral_body
from tests.harness import Hub, wait_for

pytestmark = pytest.mark.e2e

SCHOOL, HEALTH = "harlesden-primary-school", "brent-health-visiting"
FRONT_DOOR, MANAGER = "front-door-demo", "harlesden-team-manager"
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
WAIT_S = 45.0


class Receiver(ThreadingHTTPServer):
    """A partner's webhook endpoint: records each request and whether its signature held."""

    def __init__(self) -> None:
        self.secret = ""
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                key = base64.b64decode(receiver.secret.removeprefix("whsec_"))
                signed = f"{self.headers['webhook-id']}.{self.headers['webhook-timestamp']}."
                digest = hmac.new(key, signed.encode() + body, hashlib.sha256).digest()
                expected = "v1," + base64.b64encode(digest).decode()
                receiver.requests.append(
                    {
                        "id": self.headers["webhook-id"],
                        "verified": expected in self.headers["webhook-signature"].split(),
                        "event": json.loads(body),
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        self.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made = [Receiver(), Receiver()]
    for receiver in made:
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
    yield made
    for receiver in made:
        receiver.shutdown()
        receiver.server_close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_referral_reaches_partners_webhooks_signed_minimised_and_in_order(
    backend: str, module_bootstrap: str, start_hub, receivers, client: httpx.Client
) -> None:
    hub: Hub = start_hub(
        module_bootstrap,
        backend,
        extra_env={"EARLYHELP_NOTIFICATIONS_ORDERING_WINDOW_MS": "300"},
    )
    notifications = hub.url("notifications")
    school, health = receivers
    for who, receiver in ((SCHOOL, school), (HEALTH, health)):
        created = client.post(
            f"{notifications}/v1/subscriptions",
            json={
                "event_types": ["earlyhelp.referral.*", "earlyhelp.case.*"],
                "delivery": {"type": "webhook", "url": receiver.url},
            },
            headers=hub.auth(who),
        )
        assert created.status_code == 201, created.text
        receiver.secret = created.json()["secret"]

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
        lambda: len(school.requests) >= 3,
        WAIT_S,
        lambda: f"school heard {len(school.requests)}\n{hub.logs_tail(['notifications'])}",
    )

    types = [r["event"]["type"] for r in school.requests]
    assert types == [
        "earlyhelp.referral.received.v1",
        "earlyhelp.referral.triaged.v1",
        "earlyhelp.case.allocated.v1",
    ]
    assert all(r["verified"] for r in school.requests)
    assert len({r["id"] for r in school.requests}) == 3
    assert school.requests[0]["event"]["data"] == {
        "referral_id": referral.referral_id,
        "partner_reference": body["partner_reference"],
        "received_at": school.requests[0]["event"]["data"]["received_at"],
        "urgency": body["urgency"],
    }
    assert school.requests[2]["event"]["data"]["case_id"] == case_id
    sent = json.dumps([r["event"] for r in school.requests])
    # (Family names can be a worker's too: the lead professional's name is shared.)
    for child in body["children"]:
        for detail in ("given_name", "date_of_birth", "nhs_number", "upn"):
            assert not child.get(detail) or child[detail] not in sent, detail

    # Health did not refer; the family's consent lets it hear of the case.
    covers = body["consent"]["covers"]
    expected = 2 if "share_with_partner_agencies" in covers else 0
    wait_for(lambda: len(health.requests) >= expected, WAIT_S, "health heard nothing")
    assert {r["event"]["dataclassification"] for r in health.requests} <= {"restricted"}

    # The referrer is e-mailed about triage and allocation: status, never the child.
    box = hub.workdir / "var" / "mailbox"
    wait_for(
        lambda: (box / "new").exists() and len(list(mailbox.Maildir(box))) >= 3, WAIT_S, "no e-mail"
    )
    texts = " ".join(m.get_payload() for m in mailbox.Maildir(box))
    assert body["partner_reference"] in texts
    assert body["children"][0]["given_name"] not in texts
