"""The whole hub as separate processes, for end-to-end tests and benchmarks.

`Hub` migrates each service's own database (a SQLite file under its workdir, or
a fresh PostgreSQL database per service), creates the hub's topics, and runs
each service as its own `python -m hub.cli serve` process on a free port, the
way an operator would, with fast settings for tests. Nothing is mocked: the
services talk to each other only through the broker they are given.

    with Hub(tmp_path, broker.bootstrap_servers) as hub:
        httpx.post(hub.url("intake") + "/v1/referrals", json=body, headers=hub.auth())
        wait_for(lambda: count_rows(hub.database_url("allocation"), "incoming_referrals"), 30,
                 "the referral never reached allocation")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hub.broker import free_port
from hub.cli import load_definition
from hub.contracts.topics import hub_topics
from hub.kafka import ensure_topics, wait_for_broker
from hub.migrations import upgrade
from hub.settings import HubSettings
from hub.testing import (
    POSTGRES_URL,
    TEST_PUBLIC_KEYS,
    bearer,
    drop_postgres_database,
    new_postgres_database,
    token_keys_env,
)

SERVICES = ("intake", "allocation", "caseplan", "notifications")
BACKENDS = ("sqlite", "postgresql")

# Settings that make a hub react in milliseconds rather than seconds.
FAST_ENV = {
    "EARLYHELP_CONSUMER_RETRY_BACKOFF_MS": "20",
    "EARLYHELP_LOG_JSON": "true",
    "EARLYHELP_KAFKA_REQUEST_TIMEOUT_MS": "3000",
    "EARLYHELP_RELAY_RETRY_BACKOFF_MAX_MS": "500",
    # Every service verifies tokens with the test issuer's public keys; only intake (see
    # `env`) gets the private ones.
    "EARLYHELP_TOKEN_PUBLIC_KEYS": TEST_PUBLIC_KEYS,
    # Encrypts notifications' webhook signing secrets (required outside SQLite); a test key.
    "EARLYHELP_NOTIFICATIONS_SECRET_KEYS": "q5OnE2ri2r4bGtmFpBTDMM0x3XYuO1y3j6JbP9XSSRc=",
    # The tests' webhook receivers listen on 127.0.0.1: the operator allow-list is the
    # one way to a private address, as for a partner on a council's network.
    "EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
}

# Clients of config/identities.yaml that tests act as.
PARTNER = "harlesden-primary-school"
STAFF = "front-door-demo"

_STOP_TIMEOUT_S = 20.0
_LOG_TAIL_CHARS = 6000

T = TypeVar("T")


class HubError(RuntimeError):
    """A service would not start or stop; the message carries the end of its log."""


class PortTaken(HubError):
    """Another process listens on the port a service was given."""


_PORT_ATTEMPTS = 3


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux's
    /proc; elsewhere assumed)."""
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    listening = set()
    for table in tables:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                listening.add(f"socket:[{inode}]")
    descriptors = Path(f"/proc/{pid}/fd")
    try:
        entries = list(descriptors.iterdir())
    except OSError:
        return False  # the process has gone
    for entry in entries:
        try:
            if os.readlink(entry) in listening:
                return True
        except OSError:
            continue
    return False


def wait_for(predicate: Callable[[], T], timeout_s: float, message: str | Callable[[], str]) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Raises AssertionError with `message` (a string, or a callable evaluated only
    on failure, e.g. to attach a service log) and the last value seen.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (after {timeout_s:g}s; last value: {value!r})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


# --- Reading a service's database -------------------------------------------------


@lru_cache(maxsize=64)
def _engine(database_url: str) -> sa.Engine:
    # NullPool: the test holds no connection between reads, so a database can be
    # dropped (PostgreSQL) or a service restarted without waiting for the pool.
    return sa.create_engine(database_url, poolclass=NullPool, hide_parameters=True)


def dispose_engine(database_url: str) -> None:
    """Forget the cached engine of a database that is about to be dropped."""
    _engine(database_url).dispose()


def query(database_url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a read-only SQL statement, as dicts."""
    with _engine(database_url).connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]


def read_table(database_url: str, table: str, **where: Any) -> list[dict[str, Any]]:
    """Every row of `table` (a projection, `inbox`, `event_store`...), filtered by equality."""
    sql = f"SELECT * FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(f"{column} = :{column}" for column in where)
    return query(database_url, sql, **where)


def count_rows(database_url: str, table: str, **where: Any) -> int:
    """How many rows of `table` match the equality filters."""
    sql = f"SELECT COUNT(*) AS n FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(f"{column} = :{column}" for column in where)
    return query(database_url, sql, **where)[0]["n"]


def count_by(database_url: str, table: str, column: str) -> dict[str, int]:
    """{value of `column`: number of rows} for the whole table."""
    rows = query(
        database_url, f"SELECT {column} AS value, COUNT(*) AS n FROM {table} GROUP BY {column}"
    )
    return {str(row["value"]): row["n"] for row in rows}


# --- The hub -------------------------------------------------------------------------


class Hub:
    """The four services (or some of them) as processes around one broker."""

    def __init__(
        self,
        workdir: Path,
        bootstrap_servers: str,
        *,
        backend: str = "sqlite",
        services: Sequence[str] = SERVICES,
        extra_env: Mapping[str, str] | None = None,
        postgres_admin_url: str = POSTGRES_URL,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        unknown = [s for s in services if s not in SERVICES]
        if unknown:
            raise ValueError(f"unknown services {unknown}; choose from {SERVICES}")
        self.workdir = Path(workdir)
        self.bootstrap_servers = bootstrap_servers
        self.backend = backend
        self.services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.postgres_admin_url = postgres_admin_url
        self._ports: dict[str, int] = {}
        self._database_urls: dict[str, str] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._created_databases: list[str] = []
        # How each stopped service process ended (0: clean; negative: killed by that signal).
        self.exit_codes: dict[str, int] = {}
        # Extra processes of a service (`start_replica`): name -> service.
        self._replica_of: dict[str, str] = {}

    # -- what tests ask of it

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self._ports[service]}"

    def database_url(self, service: str) -> str:
        return self._database_urls[self._replica_of.get(service, service)]

    def log_path(self, service: str) -> Path:
        return self.workdir / f"{service}.log"

    def log(self, service: str) -> str:
        """The service's log so far (every run of it), for assertion messages."""
        path = self.log_path(service)
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_tail(self, services: Sequence[str] | None = None, chars: int = _LOG_TAIL_CHARS) -> str:
        """The end of each service's log, labelled: a compact failure message."""
        parts = []
        for service in services or self.services:
            parts.append(f"--- {service}.log (tail) ---\n{self.log(service)[-chars:]}")
        return "\n".join(parts)

    def env(self, service: str) -> dict[str, str]:
        """The environment the service runs with, e.g. for an `earlyhelp` command beside it."""
        service = self._replica_of.get(service, service)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("EARLYHELP_")}
        return {
            **inherited,
            **FAST_ENV,
            **{f"EARLYHELP_{k.upper()}": v for k, v in token_keys_env(service).items()},
            "EARLYHELP_SERVICE_NAME": service,
            "EARLYHELP_DATABASE_URL": self._database_urls[service],
            "EARLYHELP_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "EARLYHELP_VAR_DIR": str(self.workdir / "var"),
            "PYTHONUNBUFFERED": "1",
            **self._peers(service),
            **self.extra_env,
        }

    def _peers(self, service: str) -> dict[str, str]:
        """Intake's addresses of the other services, whose subject access answers it gathers;
        notifications' of intake, where the Encompass e-mails' acknowledgement links go."""
        if service == "notifications":
            return {"EARLYHELP_NOTIFICATIONS_INTAKE_PUBLIC_URL": self.url("intake")}
        if service != "intake":
            return {}
        return {
            f"EARLYHELP_INTAKE_{other.upper()}_URL": f"http://127.0.0.1:{port}"
            for other, port in self._ports.items()
            if other != "intake"
        }

    def auth(self, client_id: str = PARTNER) -> dict[str, str]:
        """An Authorization header for a client of the identities file."""
        return bearer(self.settings(), client_id)

    def settings(self, service: str | None = None) -> HubSettings:
        """HubSettings as the service reads them (or, without a service, for admin work)."""
        env = self.env(service) if service else {**FAST_ENV, **self.extra_env}
        values = {
            key.removeprefix("EARLYHELP_").lower(): value
            for key, value in env.items()
            if key.startswith("EARLYHELP_")
        }
        values["kafka_bootstrap_servers"] = self.bootstrap_servers
        return HubSettings(**values)

    def pid(self, service: str) -> int:
        """The process id of a running service (to signal it, e.g. SIGSTOP a consumer)."""
        return self._processes[service].pid

    def running(self, service: str) -> bool:
        process = self._processes.get(service)
        return process is not None and process.poll() is None

    # -- lifecycle

    def start(self, timeout_s: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for service in self.services:
                self._prepare_database(service)
            settings = self.settings()
            wait_for_broker(settings, timeout_s=30)
            ensure_topics(settings, hub_topics())
            for attempt in range(_PORT_ATTEMPTS):
                # A port found free can be taken before the service binds it (by another
                # test process doing the same): then every service starts again on new
                # ports, since each knows the others' addresses.
                for service in self.services:
                    self._ports[service] = free_port()
                for service in self.services:
                    self._spawn(service)
                try:
                    self._wait_ready(self.services, timeout_s)
                    return
                except PortTaken:
                    self._terminate(list(self._processes))
                    if attempt == _PORT_ATTEMPTS - 1:
                        raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every service and replica (SIGTERM, so they drain), then drop PostgreSQL
        databases."""
        try:
            self._terminate(list(self._processes))
        finally:
            for url in self._created_databases:
                dispose_engine(url)
                drop_postgres_database(url, self.postgres_admin_url)
            self._created_databases.clear()

    def stop_service(self, name: str) -> None:
        """Stop one service gracefully (SIGTERM; killed if it takes over 20 s)."""
        self._terminate([name])

    def kill_service(self, name: str) -> None:
        """Stop one service abruptly, as a crash would."""
        process = self._processes.pop(name, None)
        if process is not None:
            if process.poll() is None:
                process.kill()
            self.exit_codes[name] = process.wait()

    def signal_service(self, name: str, signum: int) -> None:
        """Send a signal to a running service (SIGHUP: read the identities file again)."""
        self._processes[name].send_signal(signum)

    def start_service(self, name: str, timeout_s: float = 60) -> None:
        """Start one service again, on the same port and database."""
        if self.running(name):
            raise HubError(f"{name} is already running")
        self._spawn(name)
        self._wait_ready([name], timeout_s)

    def start_replica(self, service: str, timeout_s: float = 60) -> str:
        """Start one more process of a running hub's service, on a port of its own and the
        same database and broker (so the same consumer group); returns its name, e.g.
        `caseplan-2`, which `url`, `log`, `stop_service`, `kill_service` and
        `start_service` accept like a service's."""
        if service not in self.services:
            raise ValueError(f"{service} is not one of this hub's services")
        number = 2
        while f"{service}-{number}" in self._ports:
            number += 1
        name = f"{service}-{number}"
        self._replica_of[name] = service
        self._ports[name] = free_port()
        self._spawn(name)
        self._wait_ready([name], timeout_s)
        return name

    def replicas(self, service: str) -> list[str]:
        """The names of the service's processes: the service itself, then its replicas."""
        return [service, *(r for r, s in self._replica_of.items() if s == service)]

    def __enter__(self) -> Hub:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the parts

    def _prepare_database(self, service: str) -> None:
        if service not in self._database_urls:
            if self.backend == "sqlite":
                url = f"sqlite:///{self.workdir / (service + '.db')}"
            else:
                url = new_postgres_database(self.postgres_admin_url)
                self._created_databases.append(url)
            self._database_urls[service] = url
        upgrade(load_definition(service).migrations, self._database_urls[service])

    def _spawn(self, service: str) -> None:
        command = [
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            self._replica_of.get(service, service),
            "--port",
            str(self._ports[service]),
        ]
        with open(self.log_path(service), "ab") as log_file:
            log_file.write(f"=== {' '.join(command[1:])}\n".encode())
            log_file.flush()
            self._processes[service] = subprocess.Popen(
                command,
                env=self.env(service),
                cwd=self.workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _wait_ready(self, services: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(services)
        last: dict[str, str] = {}
        with httpx.Client(timeout=3) as client:
            while pending:
                for service in sorted(pending):
                    process = self._processes[service]
                    if process.poll() is not None:
                        tail = self.logs_tail([service])
                        failure = PortTaken if "address already in use" in tail else HubError
                        raise failure(
                            f"{service} exited with {process.returncode} during start-up\n" + tail
                        )
                    try:
                        response = client.get(self.url(service) + "/readyz")
                        if response.status_code == 200:
                            if not _listens_on(process.pid, self._ports[service]):
                                raise PortTaken(
                                    f"{service}'s port {self._ports[service]} answers, but"
                                    " another process listens there"
                                )
                            pending.discard(service)
                        else:
                            last[service] = f"{response.status_code} {response.text[:300]}"
                    except httpx.HTTPError as exc:
                        last[service] = f"{type(exc).__name__}: {exc}"
                if pending and time.monotonic() > deadline:
                    raise HubError(
                        f"not ready after {timeout_s:g}s: "
                        + "; ".join(f"{s}: {last.get(s, '?')}" for s in sorted(pending))
                        + "\n"
                        + self.logs_tail(sorted(pending))
                    )
                if pending:
                    time.sleep(0.1)

    def _terminate(self, services: Sequence[str]) -> None:
        processes = {s: self._processes.pop(s) for s in services if s in self._processes}
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for service, process in processes.items():
            try:
                self.exit_codes[service] = process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                self.exit_codes[service] = process.wait()
