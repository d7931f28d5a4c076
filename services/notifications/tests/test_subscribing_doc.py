"""docs/subscribing.md works as written: its subscription request is accepted, and its
receiver example, run as the partner would run it (its own uvicorn process), verifies the
hub's real webhooks, keeps one copy of an event sent again, and refuses forgeries."""

import json
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hub.broker import free_port
from notifications import signing

from .conftest import SCHOOL, as_, family_key, referral, wait_until

DOC = Path(__file__).resolve().parents[3] / "docs" / "subscribing.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def receiver_example() -> str:
    [code] = [b for b in python_blocks(DOC.read_text()) if b.startswith("# receiver.py")]
    return code


def subscription_request() -> dict:
    """The JSON body of the documented `curl .../v1/subscriptions ... -d '...'`."""
    [body] = re.findall(r"/v1/subscriptions \\\n.*?-d '(\{.*?\})'", DOC.read_text(), re.DOTALL)
    return json.loads(body)


def _rows(database: Path) -> list[tuple]:
    if not database.exists():
        return []
    with sqlite3.connect(database) as conn:
        try:
            return conn.execute("SELECT webhook_id, type, family_id FROM received").fetchall()
        except sqlite3.OperationalError:  # the example has not created its table yet
            return []


@pytest.fixture
def intake(kafka_bootstrap, tmp_path):
    """Intake beside notifications, on its own database: it alone issues tokens."""
    from fastapi.testclient import TestClient

    from hub.cli import load_definition
    from hub.migrations import upgrade
    from hub.service import create_service_app
    from hub.testing import settings_for

    definition = load_definition("intake")  # by name: a service's tests import no other service

    url = f"sqlite:///{tmp_path / 'intake.db'}"
    upgrade(definition.migrations, url)
    settings = settings_for("intake", url, kafka_bootstrap, tmp_path / "intake")
    with TestClient(create_service_app(definition, settings)) as client:
        yield client


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_documented_receiver_verifies_deduplicates_and_refuses_forgeries(
    notifications, intake, publish, tmp_path
):
    app = notifications()
    # The documented token request (to intake, the token issuer), then the documented
    # subscription (to our receiver).
    token = intake.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "subscriptions:manage",
            "client_id": SCHOOL,
            "client_secret": "demo-school-secret",
        },
    )
    assert token.status_code == 200, token.text
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/earlyhelp"
    request = subscription_request()
    assert request["delivery"]["url"].endswith("/hooks/earlyhelp")
    request["delivery"]["url"] = url
    created = app.post(
        "/v1/subscriptions",
        json=request,
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    )
    assert created.status_code == 201, created.text
    secret, subscription = created.json()["secret"], created.json()["subscription_id"]

    folder = tmp_path / "partner"
    folder.mkdir()
    (folder / "receiver.py").write_text(receiver_example())
    database = folder / "received.db"
    command = [sys.executable, "-m", "uvicorn", "receiver:app", "--port", str(port)]
    env = {"EARLYHELP_WEBHOOK_SECRET": secret, "RECEIVER_DATABASE": str(database), "PATH": ""}
    with open(folder / "uvicorn.log", "wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((folder / "uvicorn.log").read_text())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, message="the documented receiver never started")
        before = datetime.now(UTC) - timedelta(seconds=1)
        received = referral()
        publish(received)
        [(webhook_id, event_type, family_id)] = wait_until(
            lambda: _rows(database), message="the documented receiver stored nothing"
        )
        assert event_type == "earlyhelp.referral.received.v1"
        assert family_id == family_key(SCHOOL, received.family_id)

        path = f"/v1/subscriptions/{subscription}"
        replayed = app.post(
            f"{path}/replay", json={"since": before.isoformat()}, headers=as_(app, SCHOOL)
        )
        assert replayed.json() == {"queued": 1}

        def acknowledged_twice():
            detail = app.get(f"{path}/deliveries/{webhook_id}", headers=as_(app, SCHOOL)).json()
            log = detail["attempt_log"]
            return log if len(log) == 2 and detail["status"] == "delivered" else None

        # The same event, sent again under the same webhook-id: acknowledged, kept once.
        attempts = wait_until(acknowledged_twice, message="the replay was not acknowledged")
        assert [a["status_code"] for a in attempts] == [204, 204]
        assert _rows(database) == [(webhook_id, event_type, family_id)]

        # Forgeries: another secret, a stale timestamp, no signature at all.
        body = json.dumps({"type": "earlyhelp.case.closed.v1", "partitionkey": "x"}).encode()
        now = int(time.time())
        stranger = signing.headers([signing.new_secret()], "msg_forged", now, body)
        stale = signing.headers([secret], "msg_stale", now - 600, body)
        with httpx.Client(timeout=5) as client:
            assert client.post(url, content=body, headers=stranger).status_code == 401
            assert client.post(url, content=body, headers=stale).status_code == 401
            assert client.post(url, content=body).status_code == 400
            # The genuine article goes in once however often it comes.
            genuine = signing.headers([secret], "msg_genuine", now, body)
            assert client.post(url, content=body, headers=genuine).status_code == 204
            assert client.post(url, content=body, headers=genuine).status_code == 204
        assert len(_rows(database)) == 2
    finally:
        process.terminate()
        process.wait(10)
