"""Notifications' service tests: the real app on a real database and broker, real receivers.

A `Receiver` is a separate process (`tests/webhook_receiver.py`) serving HTTP on
127.0.0.1 that checks every request's Standard Webhooks signature with the
published algorithm (written out there, not imported from the service), records
what arrived in a file, and can be told to fail or be killed and started again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hub.contracts.intake import ReferralReceived
from hub.testing import bearer, settings_for
from notifications.fanout import pseudonym
from notifications.service import definition
from notifications.settings import NotificationsSettings

# The receiver lives in the repository's tests/ (the e2e tests and the bench use it too):
# importable however pytest was started.
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.webhook_receiver import WebhookReceiver  # noqa: E402

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
    """A partner's endpoint: `tests/webhook_receiver.py` running as a process of its own.

    `secret` is the subscription's (set by `subscribe`); `fail_next(n)` answers the
    next n requests with 503; `fail_each(n)` the first n attempts of every delivery;
    `down()` kills the process (a crash: connections cut, port closed) and `up()`
    starts a new one on the same port, which remembers everything it answered.
    """

    def __init__(self, state_dir: Path) -> None:
        self._process = WebhookReceiver(state_dir).start()
        self.port = self._process.ports[0]
        self.url = self._process.url()
        self._secret: str | None = None

    @property
    def secret(self) -> str | None:
        return self._secret

    @secret.setter
    def secret(self, value: str) -> None:
        self._secret = value
        self._process.configure(secret=value)

    def fail_next(self, count: int, status: int = 503) -> None:
        self._process.configure(fail_first=count, fail_status=status)

    def fail_each(self, count: int, status: int = 503) -> None:
        self._process.configure(fail_each=count, fail_status=status)

    def up(self) -> None:
        self._process.start()

    def down(self) -> None:
        self._process.kill()

    def stop(self) -> None:
        self._process.stop()

    @property
    def received(self) -> list[dict]:
        """Every request, refused ones included, in the order the receiver answered them."""
        return self._process.records()

    def accepted(self) -> list[dict]:
        return [r for r in self.received if r["accepted"]]


@pytest.fixture
def receiver(tmp_path):
    made = []

    def make() -> Receiver:
        made.append(Receiver(tmp_path / f"receiver-{len(made)}"))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def wait_until(check, timeout_s=90.0, message="condition never held"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


# Encrypts the signing secrets where nothing is generated (PostgreSQL); a test key only.
TEST_SECRET_KEY = "q5OnE2ri2r4bGtmFpBTDMM0x3XYuO1y3j6JbP9XSSRc="

FAST = {
    "retry_base_ms": 30,
    "retry_max_delay_ms": 200,
    "retry_for_seconds": 60,
    "circuit_failure_threshold": 50,
    "circuit_cooldown_ms": 300,
    "worker_poll_ms": 20,
    "review_check_seconds": 0.1,
    "webhook_timeout_ms": 2000,
    "delivery_lease_ms": 5000,
    # The receivers are plain http on 127.0.0.1, on PostgreSQL too: the operator's
    # allow-list lets the hub reach them, as it would a partner on the council network.
    "allow_http_webhooks": True,
    "webhook_allowed_networks": "127.0.0.1/32",
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

    # SQLite is the embedded default: its key is generated into var_dir (tmp_path) and kept.
    keys = {} if database_url.startswith("sqlite") else {"secret_keys": TEST_SECRET_KEY}

    def start(**own):
        settings = settings_for("notifications", database_url, kafka_bootstrap, tmp_path)
        own_settings = NotificationsSettings(
            **(FAST | keys | {"mailbox_dir": tmp_path / "mailbox"} | own)
        )
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


def family_key(partner: str, family_id) -> str:
    """The family as `partner` knows it: the `partitionkey` of what it receives."""
    return pseudonym(partner, str(family_id))
