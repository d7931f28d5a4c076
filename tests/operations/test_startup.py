"""Fail-fast start-up: `earlyhelp serve` refuses to start on a broken configuration.

Each case runs the real command (`python -m hub.cli serve <service>`, as the
harness and the images do) in a process of its own and asserts its exit code
and the one line it writes to stderr. Waits are set small: nothing here waits
for more than about a second before the process gives up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub.broker import EmbeddedBroker, free_port
from hub.cli import load_definition
from hub.migrations import upgrade
from hub.testing import TEST_PUBLIC_KEYS, token_keys_env
from tests.harness import wait_for

pytestmark = pytest.mark.e2e

UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:{port}/nothing"


def serve_env(tmp_path: Path, **earlyhelp: str) -> dict[str, str]:
    """A clean environment: nothing inherited from EARLYHELP_*, short start-up waits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EARLYHELP_")}
    env.update(
        {
            "EARLYHELP_VAR_DIR": str(tmp_path / "var"),
            "EARLYHELP_TOKEN_PUBLIC_KEYS": TEST_PUBLIC_KEYS,
            "EARLYHELP_STARTUP_DATABASE_WAIT_S": "0.5",
            "EARLYHELP_STARTUP_BROKER_WAIT_S": "0.5",
            # Nothing listens there unless a case says otherwise.
            "EARLYHELP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in earlyhelp.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def serve_command(service: str, port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "hub.cli", "serve", service, "--port", str(port or free_port())]


def refuses(service: str, env: dict[str, str], tmp_path: Path) -> str:
    """Run `serve`, which must exit 1 by itself; returns the one line it gave as its reason.

    The token issuer gets the test's private keys unless `env` says otherwise."""
    private = token_keys_env(service).get("token_signing_keys")
    env = ({"EARLYHELP_TOKEN_SIGNING_KEYS": private} if private else {}) | env
    done = subprocess.run(
        serve_command(service),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = done.stderr.strip().splitlines()
    prefix = f"earlyhelp serve {service}: cannot start: "
    reasons = [line for line in lines if line.startswith(prefix)]
    assert len(reasons) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return reasons[0].removeprefix(prefix)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> dict[str, str]:
    """A migrated SQLite database per service that needs one here."""
    folder = tmp_path_factory.mktemp("databases")
    urls = {}
    for service in ("intake", "allocation"):
        urls[service] = f"sqlite:///{folder / (service + '.db')}"
        upgrade(load_definition(service).migrations, urls[service])
    return urls


# --- the database ----------------------------------------------------------------------


def test_a_malformed_database_url_is_refused(tmp_path: Path) -> None:
    env = serve_env(tmp_path, EARLYHELP_DATABASE_URL="localhost:5432/intake")
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith("EARLYHELP_DATABASE_URL is not a database URL"), reason


def test_a_database_url_with_an_unknown_driver_is_refused(tmp_path: Path) -> None:
    # `postgres://` is what many platforms hand out; SQLAlchemy only knows `postgresql`.
    env = serve_env(tmp_path, EARLYHELP_DATABASE_URL="postgres://hub:secret@db:5432/intake")
    reason = refuses("intake", env, tmp_path)
    assert "unknown database driver 'postgres'" in reason, reason
    assert "secret" not in reason


def test_an_unreachable_database_is_refused_after_the_wait(tmp_path: Path) -> None:
    port = free_port()
    env = serve_env(
        tmp_path, EARLYHELP_DATABASE_URL=UNREACHABLE_PG.format(port=port).replace("@", ":pw@")
    )
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith(
        f"database postgresql+psycopg://postgres:***@127.0.0.1:{port}/nothing "
        "did not answer within 0.5s"
    ), reason
    assert "Connection refused" in reason, reason
    assert ":pw@" not in reason


def test_a_database_that_is_not_migrated_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    reason = refuses("intake", serve_env(tmp_path, EARLYHELP_DATABASE_URL=url), tmp_path)
    assert reason == f"database {url} is not migrated: run `earlyhelp migrate intake` first"


# --- the broker --------------------------------------------------------------------------


def test_an_unreachable_broker_is_refused_after_the_wait(
    tmp_path: Path, migrated: dict[str, str]
) -> None:
    env = serve_env(tmp_path, EARLYHELP_DATABASE_URL=migrated["intake"])
    reason = refuses("intake", env, tmp_path)
    servers = env["EARLYHELP_KAFKA_BOOTSTRAP_SERVERS"]
    assert reason.startswith(f"no Kafka broker answered at {servers} within 0.5s"), reason


def test_a_broker_that_comes_up_within_the_wait_is_waited_for(
    tmp_path: Path, migrated: dict[str, str]
) -> None:
    broker = EmbeddedBroker(free_port(), log_path=tmp_path / "broker.log")
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL=migrated["intake"],
        EARLYHELP_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
        EARLYHELP_STARTUP_BROKER_WAIT_S="30",
    )
    port = free_port()
    log = open(tmp_path / "intake.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        serve_command("intake", port), env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    try:
        time.sleep(1.5)  # the service is waiting for the broker by now
        assert process.poll() is None, (tmp_path / "intake.log").read_text()
        broker.start()
        wait_for(
            lambda: process.poll() is not None or _ready(port),
            # A condition: on a loaded machine, start-up and the first broker round trip
            # took longer than 30 s.
            90,
            lambda: (tmp_path / "intake.log").read_text(),
        )
        assert process.poll() is None, (tmp_path / "intake.log").read_text()
    finally:
        _stop(process)
        log.close()
        broker.stop()


# --- secrets and files -------------------------------------------------------------------


def test_the_token_issuer_on_postgresql_without_its_private_keys_is_refused(
    tmp_path: Path,
) -> None:
    # Checked before anything is reached: no PostgreSQL is needed to see it.
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL=UNREACHABLE_PG.format(port=free_port()),
        EARLYHELP_TOKEN_SIGNING_KEYS="",
    )
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith("EARLYHELP_TOKEN_SIGNING_KEYS is not set"), reason
    assert not (tmp_path / "var").exists(), "no key may be generated"


def test_a_service_that_does_not_issue_tokens_refuses_the_private_keys(tmp_path: Path) -> None:
    env = serve_env(
        tmp_path, **{f"EARLYHELP_{k.upper()}": v for k, v in token_keys_env("intake").items()}
    )
    reason = refuses("caseplan", env, tmp_path)
    assert reason.startswith("EARLYHELP_TOKEN_SIGNING_KEYS is set, but only the token issuer")


def test_a_service_on_postgresql_without_public_keys_is_refused(tmp_path: Path) -> None:
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL=UNREACHABLE_PG.format(port=free_port()),
        EARLYHELP_TOKEN_PUBLIC_KEYS=None,
    )
    reason = refuses("allocation", env, tmp_path)
    assert reason.startswith("no public keys to verify tokens with"), reason


def test_a_missing_identities_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "identities.yaml"
    env = serve_env(tmp_path, EARLYHELP_IDENTITIES_FILE=str(missing))
    reason = refuses("notifications", env, tmp_path)
    assert reason == f"identities file {missing} not found (EARLYHELP_IDENTITIES_FILE)"


def test_an_invalid_identities_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "identities.yaml"
    broken.write_text("clients:\n  - client_id: someone\n    kind: partner\n")
    reason = refuses("intake", serve_env(tmp_path, EARLYHELP_IDENTITIES_FILE=str(broken)), tmp_path)
    assert reason.startswith(f"identities file {broken} is invalid: "), reason
    assert "clients.0.secret_hash: Field required" in reason, reason


def test_an_invalid_hub_setting_is_refused_naming_the_variable(tmp_path: Path) -> None:
    reason = refuses("intake", serve_env(tmp_path, EARLYHELP_DATABASE_POOL_SIZE="0"), tmp_path)
    assert reason.startswith("invalid HubSettings: EARLYHELP_DATABASE_POOL_SIZE: "), reason


def test_an_invalid_service_setting_is_refused(tmp_path: Path) -> None:
    env = serve_env(tmp_path, EARLYHELP_ALLOCATION_REVIEW_DEFAULT_MONTHS="6")
    reason = refuses("allocation", env, tmp_path)
    assert reason.startswith("invalid AllocationSettings: "), reason
    assert "review_default_months cannot exceed review_maximum_months" in reason, reason


def test_postgresql_tls_settings_that_would_not_protect_the_connection_are_refused(
    tmp_path: Path,
) -> None:
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL="postgresql+psycopg://intake@db.internal:5432/intake",
        EARLYHELP_DATABASE_SSLMODE="verify-full",
    )
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith("invalid HubSettings: "), reason
    assert "EARLYHELP_DATABASE_SSLMODE=verify-full needs EARLYHELP_DATABASE_SSLROOTCERT" in reason


def test_intake_refuses_an_address_of_another_service_that_is_not_a_url(tmp_path: Path) -> None:
    env = serve_env(tmp_path, EARLYHELP_INTAKE_CASEPLAN_URL="caseplan:8003")
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith("invalid IntakeSettings: "), reason
    assert "caseplan_url" in reason and "http://" in reason, reason


def test_a_missing_registry_file_stops_allocation(
    tmp_path: Path, migrated: dict[str, str], kafka_bootstrap: str
) -> None:
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL=migrated["allocation"],
        EARLYHELP_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        EARLYHELP_ALLOCATION_REGISTRY_FILE=str(tmp_path / "no-registry.yaml"),
    )
    port = free_port()
    process = subprocess.Popen(
        serve_command("allocation", port),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: process.poll() is not None or _ready(port), 30, "neither exited nor ready")
        assert process.poll() == 1, "allocation started without its registry file"
        assert "registry file" in process.stderr.read()
    finally:
        _stop(process)


# --- and a good configuration still starts ------------------------------------------------


def test_a_valid_configuration_starts_and_stops_cleanly(
    tmp_path: Path, migrated: dict[str, str], kafka_bootstrap: str
) -> None:
    env = serve_env(
        tmp_path,
        EARLYHELP_DATABASE_URL=migrated["intake"],
        EARLYHELP_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
    )
    port = free_port()
    log_path = tmp_path / "intake.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            serve_command("intake", port), env=env, cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        wait_for(
            lambda: process.poll() is not None or _ready(port), 30, lambda: log_path.read_text()
        )
        assert process.poll() is None, log_path.read_text()
    finally:
        code = _stop(process)
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "cannot start" not in log_path.read_text()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


# --- a service's own start-up checks (the hook allocation's registry file needs) ---------


def test_a_failing_startup_check_of_a_service_stops_it_with_its_message(
    tmp_path: Path, migrated: dict[str, str], kafka_bootstrap: str
) -> None:
    from dataclasses import replace

    from hub.service import Runtime, StartupError
    from hub.testing import settings_for

    def registry_file() -> None:
        raise RuntimeError(f"registry file {tmp_path / 'none.yaml'} not found")

    checked = []
    definition = replace(
        load_definition("intake"),
        startup_checks={"fine": lambda: checked.append(True), "registry": registry_file},
    )
    settings = settings_for("intake", migrated["intake"], kafka_bootstrap, tmp_path)
    runtime = Runtime(definition, settings)
    try:
        with pytest.raises(StartupError) as refused:
            runtime.preflight()
    finally:
        runtime.db.dispose()
    assert checked == [True]
    assert str(refused.value) == (
        f"registry: RuntimeError: registry file {tmp_path / 'none.yaml'} not found"
    )
