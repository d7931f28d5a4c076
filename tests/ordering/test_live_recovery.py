"""Recovery commands against a running service: `earlyhelp rebuild` refuses and changes
nothing while the service runs (on SQLite and on PostgreSQL), and works once it is
stopped; `earlyhelp republish` on a live PostgreSQL service lets the service's leading
relay send what it queued and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from caseplan.service import definition as caseplan
from hub.contracts.intake import ReferralReceived
from hub.testing import bearer, token_keys_env
from intake.schemas import ReferralSubmission
from intake.service import definition as intake

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


def _earlyhelp(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARLYHELP_")}
    env |= {
        "EARLYHELP_DATABASE_URL": settings.database_url,
        "EARLYHELP_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "EARLYHELP_VAR_DIR": str(settings.var_dir),
    }
    env |= {
        f"EARLYHELP_{name.upper()}": value
        for name, value in token_keys_env(settings.service_name).items()
    }
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(database_url: str, table: str) -> int:
    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def _wait(predicate, timeout_s: float, message: str):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, message
        time.sleep(0.1)
    return value


def test_rebuild_refuses_while_the_service_runs_and_works_once_it_is_stopped(
    service_client, publish, database_url
):
    service = service_client(caseplan)
    publish(ReferralReceived.example())
    _wait(lambda: _rows(database_url, "chronology_entries") == 1, 30, "never projected")

    refused = _earlyhelp(service.settings, "rebuild", "caseplan")

    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output
    assert "refused, nothing changed" in output and "caseplan is running" in output, output
    assert _rows(database_url, "chronology_entries") == 1
    assert _rows(database_url, "inbox") > 0

    service_client.stop(service)
    rebuilt = _earlyhelp(service.settings, "rebuild", "caseplan", "chronology")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "chronology: rebuilt from 1 events" in rebuilt.stdout
    assert _rows(database_url, "chronology_entries") == 1


def test_republish_on_a_live_service_says_which_relay_sent_what_it_queued(
    service_client, database_url
):
    service = service_client(intake)
    headers = bearer(service.settings, "harlesden-primary-school")
    for number in range(3):
        body = EXAMPLE | {"partner_reference": f"LIVE-{number}"}
        assert service.post("/v1/referrals", json=body, headers=headers).status_code == 202
    _wait(lambda: _rows(database_url, "outbox") == 0, 30, "never published")

    result = _earlyhelp(service.settings, "republish", "intake", "--from-position", "0")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "queued 3 events from position 0 in the outbox" in output, output
    # On PostgreSQL one relay per database leads (an advisory lock): the running service's.
    # A SQLite database is one process's, and each process's relay sends what it sees.
    sender = "this command" if database_url.startswith("sqlite") else "the service's running relay"
    assert f"3 sent by {sender}; 0 still queued" in output, output
    assert _rows(database_url, "outbox") == 0
