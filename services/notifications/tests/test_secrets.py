"""Webhook signing secrets encrypted at rest: never stored in clear, keys generated on the
embedded default and required elsewhere, rotated without losing a secret, and the secrets
of databases from before encryption migrated and still signing."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from hub import migrations
from hub.broker import free_port
from hub.idempotency import fingerprint
from hub.service import StartupError
from hub.testing import TEST_PUBLIC_KEYS, settings_for
from notifications.schemas import SubscriptionRequest
from notifications.service import create_app, definition
from notifications.settings import NotificationsSettings

from .conftest import SCHOOL, TEST_SECRET_KEY, as_, referral, subscribe, wait_until

KEY_FILE = "notifications-secret-keys"
HOOK_TYPES = ["earlyhelp.referral.received.v1"]


def everything_stored(database_url: str) -> str:
    """Every row of every table of the database, as text."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return "\n".join(
                repr(row)
                for table in tables
                for row in conn.execute(sa.text(f"SELECT * FROM {table}"))
            )
    finally:
        engine.dispose()


def stored_secrets(database_url: str) -> list[tuple]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    sa.text("SELECT secret_encrypted, previous_secret_encrypted FROM subscriptions")
                )
            ]
    finally:
        engine.dispose()


def test_no_secret_is_stored_in_clear_not_even_in_a_kept_response(
    notifications, receiver, publish, database_url
):
    app = notifications()
    school = receiver()
    key = {"Idempotency-Key": "sub-secret-1"}
    request = {"event_types": HOOK_TYPES, "delivery": {"type": "webhook", "url": school.url}}
    created = app.post("/v1/subscriptions", json=request, headers=as_(app, SCHOOL) | key)
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    # The response kept for the key gives the same secret again, in clear.
    again = app.post("/v1/subscriptions", json=request, headers=as_(app, SCHOOL) | key)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == created.json()
    path = f"/v1/subscriptions/{created.json()['subscription_id']}/secret/rotate"
    rotated = app.post(path, headers=as_(app, SCHOOL) | {"Idempotency-Key": "rotate-1"})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    replayed = app.post(path, headers=as_(app, SCHOOL) | {"Idempotency-Key": "rotate-1"})
    assert replayed.json()["secret"] == new_secret

    stored = everything_stored(database_url)
    assert "whsec_" not in stored
    for value in (secret, new_secret):
        assert value not in stored and value.removeprefix("whsec_") not in stored
    [(sealed, previous)] = stored_secrets(database_url)
    assert sealed.startswith("gAAAAA") and previous.startswith("gAAAAA")  # Fernet tokens

    # And the webhooks are signed with the secrets themselves: both, during the grace period.
    school.secret = new_secret
    publish(referral())
    wait_until(lambda: school.accepted(), message="nothing arrived")
    assert len(school.accepted()[0]["headers"]["webhook-signature"].split()) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_embedded_default_generates_a_key_in_var_and_keeps_it(
    notifications, receiver, publish, tmp_path
):
    app = notifications()
    key_file = tmp_path / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text()
    Fernet(key.split()[0].encode())  # a Fernet key
    school = receiver()
    subscribe(app, SCHOOL, HOOK_TYPES, school)
    notifications.stop(app)

    notifications()
    assert key_file.read_text() == key
    publish(referral())
    wait_until(lambda: school.accepted(), message="not signed with the kept secret")
    assert all(r["verified"] for r in school.received)


def test_keys_are_required_outside_the_embedded_default(tmp_path, kafka_bootstrap):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = settings_for("notifications", url, kafka_bootstrap, tmp_path)
    with pytest.raises(StartupError, match="EARLYHELP_NOTIFICATIONS_SECRET_KEYS is not set"):
        create_app(settings, NotificationsSettings())
    with pytest.raises(StartupError, match="must hold Fernet keys"):
        create_app(settings, NotificationsSettings(secret_keys="not-a-key"))
    assert not (tmp_path / KEY_FILE).exists(), "no key may be generated"


def test_earlyhelp_serve_refuses_to_start_without_keys_on_postgresql(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARLYHELP_")}
    env |= {
        "EARLYHELP_VAR_DIR": str(tmp_path / "var"),
        "EARLYHELP_TOKEN_PUBLIC_KEYS": TEST_PUBLIC_KEYS,
        "EARLYHELP_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x",
    }
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve", "notifications", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    prefix = "earlyhelp serve notifications: cannot start: "
    [reason] = [line for line in done.stderr.splitlines() if line.startswith(prefix)]
    assert reason.removeprefix(prefix).startswith("EARLYHELP_NOTIFICATIONS_SECRET_KEYS is not set")
    assert not (tmp_path / "var" / KEY_FILE).exists()


def test_keys_rotate_without_losing_a_secret(notifications, receiver, publish, database_url):
    old, new, stranger = (Fernet.generate_key().decode() for _ in range(3))
    app = notifications(secret_keys=old)
    school = receiver()
    sub = subscribe(app, SCHOOL, HOOK_TYPES, school)
    rotated = app.post(
        f"/v1/subscriptions/{sub['subscription_id']}/secret/rotate", headers=as_(app, SCHOOL)
    )
    assert rotated.status_code == 200
    school.secret = rotated.json()["secret"]
    notifications.stop(app)

    # The new key first, the old one still listed: the service re-encrypts at start.
    notifications.stop(notifications(secret_keys=f"{new},{old}"))
    for sealed in stored_secrets(database_url)[0]:
        Fernet(new.encode()).decrypt(sealed.encode())  # both secrets, under the new key alone

    # The old key gone: every secret still opens, and webhooks are signed with it.
    notifications(secret_keys=new)
    publish(referral())
    wait_until(lambda: school.accepted(), message="not signed after the key rotation")
    assert all(r["verified"] for r in school.received)

    # Keys that open nothing stored stop the service, naming what they cannot open.
    with pytest.raises(StartupError, match="opens with none of the keys"):
        notifications(secret_keys=stranger)


def test_secrets_stored_before_encryption_are_encrypted_and_keep_signing(
    notifications, receiver, publish, database_url, tmp_path, monkeypatch
):
    # As `earlyhelp migrate` and `make run` read them: the environment.
    monkeypatch.setenv("EARLYHELP_VAR_DIR", str(tmp_path))
    if not database_url.startswith("sqlite"):
        monkeypatch.setenv("EARLYHELP_NOTIFICATIONS_SECRET_KEYS", TEST_SECRET_KEY)
    migrations.downgrade(definition.migrations, database_url, "0003")
    school = receiver()
    secret, previous = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "A" * 32
    subscription_id, now = str(uuid4()), datetime(2025, 3, 1, tzinfo=UTC)
    request = SubscriptionRequest.model_validate(
        {"event_types": HOOK_TYPES, "delivery": {"type": "webhook", "url": school.url}}
    )
    created = {"subscription_id": subscription_id, "partner_id": SCHOOL, "secret": secret}
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO subscriptions (subscription_id, partner_id, partner_type,"
                    " event_types, channel, url, endpoint, secret, previous_secret,"
                    " previous_secret_until, status, created_at, updated_at) VALUES (:id,"
                    " :partner, 'school', :types, 'webhook', :url, :endpoint, :secret,"
                    " :previous, :until, 'active', :now, :now)"
                ),
                {
                    "id": subscription_id,
                    "partner": SCHOOL,
                    "types": json.dumps(HOOK_TYPES),
                    "url": school.url,
                    "endpoint": f"http://127.0.0.1:{school.port}",
                    "secret": secret,
                    "previous": previous,
                    "until": now,
                    "now": now,
                },
            )
            # The response kept for a create's Idempotency-Key, secret included.
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (principal, idempotency_key,"
                    " request_fingerprint, status_code, response_body, response_headers,"
                    " created_at) VALUES (:partner, 'before-encryption', :fingerprint, 201,"
                    " :body, '{}', :now)"
                ),
                {
                    "partner": SCHOOL,
                    "fingerprint": fingerprint(
                        "POST", "/v1/subscriptions", request.model_dump_json()
                    ),
                    "body": json.dumps(created, separators=(",", ":")),
                    "now": now,
                },
            )

        migrations.upgrade(definition.migrations, database_url)

        stored = everything_stored(database_url)
        assert "whsec_" not in stored and "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in stored
        # Encrypted with the service's own keys: it opens them, and signs with the secret.
        app = notifications()
        replayed = app.post(
            "/v1/subscriptions",
            json=request.model_dump(mode="json"),
            headers=as_(app, SCHOOL) | {"Idempotency-Key": "before-encryption"},
        )
        assert replayed.status_code == 201 and replayed.json() == created
        school.secret = secret
        publish(referral())
        wait_until(lambda: school.accepted(), message="the migrated secret signs nothing")
        assert all(r["verified"] for r in school.received)
        notifications.stop(app)

        # And back down: the secrets in clear again.
        migrations.downgrade(definition.migrations, database_url, "0003")
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT secret, previous_secret FROM subscriptions")).one()
            body = conn.execute(sa.text("SELECT response_body FROM idempotency_keys")).scalar()
        assert tuple(row) == (secret, previous)
        assert json.loads(body) == created
    finally:
        engine.dispose()
