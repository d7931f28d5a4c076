"""`make run`: the whole hub on one machine, on the embedded defaults.

Starts the embedded broker, creates the topics, migrates each service's SQLite
database under `var/`, starts the four services as separate uvicorn processes
and stops everything cleanly (services first, so they drain, then the broker)
on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

import httpx

from hub.auth import embedded_issuer
from hub.broker import EmbeddedBroker
from hub.contracts.topics import hub_topics
from hub.kafka import ensure_topics, wait_for_broker
from hub.migrations import upgrade
from hub.settings import HubSettings


def run_hub(services: Sequence[str], *, embedded_broker: bool = True) -> int:
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
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        wait_for_broker(settings, timeout_s=30)
        ensure_topics(settings, hub_topics())
        definitions = [load_definition(name) for name in services]
        for definition in definitions:
            url = HubSettings(service_name=definition.name).database_url
            upgrade(definition.migrations, url)
            print(f"migrated {definition.name}: {url}", flush=True)
        for definition in definitions:
            processes[definition.name] = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve", definition.name],
                env={**os.environ, "EARLYHELP_SERVICE_NAME": definition.name},
            )
        _wait_ready(definitions, processes, stop)
        if not stop.is_set():
            _write_demo_tokens(settings)
            print("\nEarly Help Hub is running:", flush=True)
            for definition in definitions:
                base = f"http://127.0.0.1:{definition.port}"
                print(f"  {definition.name:<14} {base}  (docs {base}/docs)", flush=True)
            print(f"Demo bearer tokens (valid {DEMO_TOKEN_TTL_S // 60} minutes):", flush=True)
            for file_name, (_, who) in DEMO_CLIENTS.items():
                print(f"  {settings.var_dir / file_name}  {who}", flush=True)
            print("Ctrl-C stops everything.", flush=True)
        while not stop.is_set():
            exited = [n for n, p in processes.items() if p.poll() is not None]
            if exited:
                print(f"{', '.join(exited)} exited; stopping the hub", file=sys.stderr)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        _stop_processes(processes)
        if broker is not None:
            broker.stop()
        print("stopped", flush=True)


DEMO_TOKEN_TTL_S = 3600
# One per role a newcomer will want to try; the first two are the ones the README uses.
DEMO_CLIENTS = {
    "demo-token": ("harlesden-primary-school", "a partner school"),
    "demo-staff-token": ("front-door-demo", "front-door staff"),
    "demo-manager-token": ("harlesden-team-manager", "a locality team manager"),
    "demo-practitioner-token": ("samira-okafor", "a practitioner, lead professional"),
    "demo-chair-token": ("brent-panel-chair", "a panel chair"),
    "demo-social-care-token": ("brent-childrens-social-care", "the social care partner"),
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


def _wait_ready(definitions, processes, stop: threading.Event, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    pending = {d.name: f"http://127.0.0.1:{d.port}/readyz" for d in definitions}
    while pending and not stop.is_set():
        for name, url in list(pending.items()):
            if processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited during start-up")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    del pending[name]
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout_s}s: {', '.join(pending)}")
        time.sleep(0.2)


def _stop_processes(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
