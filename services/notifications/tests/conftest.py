"""Notifications' service tests: the real app on a real database and broker, real receivers.

A `Receiver` is a real HTTP server on 127.0.0.1 that checks every request's
Standard Webhooks signature with the published algorithm (written out here, not
imported from the service), records what arrived, and can be told to fail or to
go down and come back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hub.broker import free_port
from hub.contracts.intake import ReferralReceived
from hub.testing import bearer, settings_for
from notifications.service import definition
from notifications.settings import NotificationsSettings

SCHOOL, HEALTH, POLICE = "harlesden-primary-school", "brent-health-visiting", "met-police-brent"
SOCIAL_CARE, STAFF = "brent-childrens-social-care", "front-door-demo"
SCOPE = ["subscriptions:manage"]


def verify_signature(secret: str, headers: dict, body: bytes) -> bool:
    """Standard Webhooks, as a receiver implements it from the specification."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if "," in s]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secret: str | None = None
        self.received: list[dict] = []  # every request, including refused ones
        self._fail_next = 0
        self._fail_status = 503
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.up()

    def fail_next(self, count: int, status: int = 503) -> None:
        with self._lock:
            self._fail_next, self._fail_status = count, status

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    failing = receiver._fail_next > 0
                    if failing:
                        receiver._fail_next -= 1
                    verified = receiver.secret is not None and verify_signature(
                        receiver.secret, headers, body
                    )
                    receiver.received.append(
                        {
                            "headers": headers,
                            "event": json.loads(body),
                            "verified": verified,
                            "accepted": verified and not failing,
                        }
                    )
                status = receiver._fail_status if failing else 204 if verified else 401
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[dict]:
        with self._lock:
            return [r for r in self.received if r["accepted"]]


@pytest.fixture
def receiver():
    made = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for r in made:
        r.down()


def wait_until(check, timeout_s=30.0, message="condition never held"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


FAST = {
    "retry_base_ms": 30,
    "retry_max_delay_ms": 200,
    "retry_for_seconds": 60,
    "circuit_failure_threshold": 50,
    "circuit_cooldown_ms": 300,
    "worker_poll_ms": 20,
    "ordering_window_ms": 300,
    "review_check_seconds": 0.1,
    "webhook_timeout_ms": 2000,
    "delivery_lease_ms": 5000,
    # The receivers are plain http on 127.0.0.1, on PostgreSQL too.
    "allow_http_webhooks": True,
}


@pytest.fixture
def notifications(database_url, kafka_bootstrap, tmp_path):
    """A factory: the notifications app (hub workers and delivery worker) on `database_url`.

    `notifications(**own_settings)` starts one; `notifications.stop(app)` stops it
    early, as a restart would.
    """
    from fastapi.testclient import TestClient

    from hub.migrations import upgrade
    from notifications.service import create_app

    upgrade(definition.migrations, database_url)
    running = []

    def stop(client):
        if client in running:
            running.remove(client)
            client.__exit__(None, None, None)

    def start(**own):
        settings = settings_for("notifications", database_url, kafka_bootstrap, tmp_path)
        own_settings = NotificationsSettings(**(FAST | {"mailbox_dir": tmp_path / "mailbox"} | own))
        client = TestClient(create_app(settings, own_settings))
        client.settings = settings
        client.own = own_settings
        client.__enter__()
        running.append(client)
        return client

    start.stop = stop
    yield start
    for client in list(running):
        stop(client)


def as_(client, who, scopes=SCOPE):
    return bearer(client.settings, who, scopes)


def subscribe(client, who, event_types, target, **extra):
    delivery = (
        {"type": "partner_topic"} if target == "topic" else {"type": "webhook", "url": target.url}
    )
    response = client.post(
        "/v1/subscriptions",
        json={"event_types": event_types, "delivery": delivery, **extra},
        headers=as_(client, who),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    if target != "topic":
        target.secret = body["secret"]
    return body


def referral(
    referrer=SCHOOL,
    referrer_type="school",
    upn="G304200119123",
    covers=None,
    override=False,
    reference="HPS-1",
    email="dsl@school.example.org",
):
    """A new referral (new family) made now by `referrer`, its first child with `upn`."""
    example = ReferralReceived.examples()[0]
    children = [
        {**child, "person_id": str(uuid4())} | ({"upn": upn} if i == 0 and upn else {})
        for i, child in enumerate(example["children"])
    ]
    if not upn:
        children = [{k: v for k, v in c.items() if k != "upn"} for c in children]
    consent = example["consent"] | {
        "covers": list(
            covers
            if covers is not None
            else ["early_help_assessment", "share_with_partner_agencies"]
        )
    }
    data = example | {
        "referral_id": str(uuid4()),
        "family_id": str(uuid4()),
        "received_at": datetime.now(UTC).isoformat(),
        "partner_reference": reference,
        "children": children,
        "household_members": [
            {**m, "person_id": str(uuid4())} for m in example["household_members"]
        ],
        "referrer": example["referrer"]
        | {"organisation_id": referrer, "organisation_type": referrer_type, "email": email},
        "consent": consent,
    }
    if override:
        data["safeguarding_override"] = {
            "reason": "Asking would put the child at risk.",
            "recorded_by": "front-door-demo",
            "recorded_at": datetime.now(UTC).isoformat(),
        }
    return ReferralReceived.model_validate(data)


def all_fanned_out(database_url: str, family_id) -> bool:
    """Whether every journalled event of the family has been fanned out."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM event_journal"
                    " WHERE fanned_out = false AND family_id = :family"
                ),
                {"family": str(family_id)},
            ).scalar()
        return waiting == 0
    finally:
        engine.dispose()
