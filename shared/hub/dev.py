"""`make run`: the whole hub on one machine, on the embedded defaults.

Starts the embedded broker, creates the topics, migrates each service's SQLite
database under `var/`, starts the services as separate uvicorn processes and
stops everything cleanly (services first, so they drain, then the broker) on
Ctrl-C or SIGTERM. A service that dies is started again, with backoff, on its
own: the rest of the hub, and the memory-only broker's records, stay up.

A service left out (`--skip`) is still migrated, so that `earlyhelp serve`
run by hand (under a debugger, say) joins the hub on the same defaults.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from hub.auth import embedded_issuer
from hub.broker import EmbeddedBroker
from hub.contracts.topics import hub_topics
from hub.kafka import ensure_topics, wait_for_broker
from hub.migrations import upgrade
from hub.settings import HubSettings

# A service that keeps dying is started again after 1, 2, 4 ... up to 30 seconds;
# one that stayed up this long is back to the shortest wait.
_FIRST_RESTART_S = 1.0
_LONGEST_RESTART_S = 30.0
_STABLE_S = 60.0


def run_hub(
    services: Sequence[str],
    *,
    embedded_broker: bool = True,
    skip: Sequence[str] = (),
    port_offset: int = 0,
) -> int:
    from hub.cli import load_definition

    settings = HubSettings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    broker = None
    if embedded_broker:
        host, _, port = settings.bootstrap_servers[0].rpartition(":")
        broker = EmbeddedBroker(int(port), host, log_path=settings.var_dir / "broker.log")
        print(f"starting the embedded broker on {broker.bootstrap_servers}", flush=True)
        broker.start()
    children: dict[str, _Child] = {}
    try:
        wait_for_broker(settings, timeout_s=30)
        ensure_topics(settings, hub_topics())
        definitions = [load_definition(name) for name in services]
        for definition in definitions:
            url = HubSettings(service_name=definition.name).database_url
            upgrade(definition.migrations, url)
            print(f"migrated {definition.name}: {url}", flush=True)
        ports = {d.name: d.port + port_offset for d in definitions if d.name not in skip}
        # Intake gathers subject access answers from the others (a skipped one included).
        peers = {
            f"EARLYHELP_INTAKE_{d.name.upper()}_URL": f"http://127.0.0.1:{d.port + port_offset}"
            for d in definitions
            if d.name != "intake"
        }
        for name, port in ports.items():
            children[name] = _Child(name, port, peers if name == "intake" else {})
            children[name].start()
        _wait_ready(ports, children, stop)
        if not stop.is_set():
            _write_demo_tokens(settings)
            print("\nEarly Help Hub is running:", flush=True)
            for name, port in ports.items():
                base = f"http://127.0.0.1:{port}"
                print(f"  {name:<14} {base}  (docs {base}/docs)", flush=True)
            for name in skip:
                print(f"  {name:<14} not started: `earlyhelp serve {name}` joins", flush=True)
            print(f"Demo bearer tokens (valid {DEMO_TOKEN_TTL_S // 60} minutes):", flush=True)
            for file_name, (_, who) in DEMO_CLIENTS.items():
                print(f"  {settings.var_dir / file_name}  {who}", flush=True)
            print("Ctrl-C stops everything.", flush=True)
        while not stop.is_set():
            for child in children.values():
                child.supervise()
            stop.wait(0.2)
        return 0
    finally:
        _stop_processes(children)
        if broker is not None:
            broker.stop()
        print("stopped", flush=True)


@dataclass
class _Child:
    """One service's process, started again with backoff whenever it dies."""

    name: str
    port: int
    # Settings of its own, under any the operator set in the environment.
    extra_env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = _FIRST_RESTART_S
    restarts: int = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", self.name, "--port", str(self.port)],
            env={**self.extra_env, **os.environ, "EARLYHELP_SERVICE_NAME": self.name},
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        print(f"{self.name} started (pid {self.process.pid})", flush=True)

    def supervise(self) -> None:
        now = time.monotonic()
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.start()
            return
        assert self.process is not None
        status = self.process.poll()
        if status is None:
            return
        if now - self.started_at >= _STABLE_S:
            self.backoff_s = _FIRST_RESTART_S
        self.restart_at = now + self.backoff_s
        print(
            f"{self.name} exited with status {status}; restarting it in {self.backoff_s:g}s "
            f"(restart {self.restarts + 1}); the rest of the hub stays up",
            file=sys.stderr,
            flush=True,
        )
        self.backoff_s = min(self.backoff_s * 2, _LONGEST_RESTART_S)


DEMO_TOKEN_TTL_S = 3600
# One per role a newcomer will want to try; the first two are the ones the README uses.
DEMO_CLIENTS = {
    "demo-token": ("harlesden-primary-school", "a partner school"),
    "demo-staff-token": ("front-door-demo", "front-door staff"),
    "demo-manager-token": ("harlesden-team-manager", "a locality team manager"),
    "demo-practitioner-token": ("samira-okafor", "a practitioner, lead professional"),
    "demo-chair-token": ("brent-panel-chair", "a panel chair"),
    "demo-social-care-token": ("brent-childrens-social-care", "the social care partner"),
    "demo-ig-token": ("information-governance-officer", "information governance"),
}


def _write_demo_tokens(settings: HubSettings) -> None:
    """Ready-made tokens so that a newcomer can curl at once (embedded default only)."""
    tokens = embedded_issuer(settings)
    for file_name, (client_id, _) in DEMO_CLIENTS.items():
        client = tokens.identities.current.client(client_id)
        if client is None:
            continue  # the identities file was changed and no longer has the demo client
        token, _ = tokens.issue(client, ttl_seconds=DEMO_TOKEN_TTL_S)
        path = settings.var_dir / file_name
        path.write_text(token + "\n")
        path.chmod(0o600)


def _wait_ready(
    ports: Mapping[str, int],
    children: Mapping[str, _Child],
    stop: threading.Event,
    timeout_s: float = 60,
) -> None:
    deadline = time.monotonic() + timeout_s
    pending = {name: f"http://127.0.0.1:{port}/readyz" for name, port in ports.items()}
    while pending and not stop.is_set():
        for name, url in list(pending.items()):
            process = children[name].process
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited during start-up")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    del pending[name]
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout_s}s: {', '.join(pending)}")
        time.sleep(0.2)


def _stop_processes(children: Mapping[str, _Child]) -> None:
    running = [c.process for c in children.values() if c.process and c.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
