"""The two measurements: (a) intake throughput beside a bare endpoint, (b) end-to-end latency."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hub.broker import EmbeddedBroker, free_port
from tests.bench import profile as profiling
from tests.bench.load import (
    BenchError,
    OpenLoopRun,
    WrkResult,
    fetch_all,
    open_loop,
    run_wrk,
)
from tests.bench.observe import (
    REFERRAL_RECEIVED,
    Drain,
    HubState,
    hub_state,
    outbox_backlog_metric,
    wait_until_idle,
)
from tests.bench.profile import Profile
from tests.harness import STAFF, Hub, count_rows

REPO_ROOT = Path(__file__).resolve().parents[2]

# The harness speeds services up for tests; the bench measures them as `make run`
# configures them (HubSettings defaults), with the JSON logs at INFO.
PRODUCTION_ENV = {
    "EARLYHELP_CONSUMER_RETRY_BACKOFF_MS": "200",
    "EARLYHELP_RELAY_IDLE_POLL_MS": "250",
    "EARLYHELP_KAFKA_REQUEST_TIMEOUT_MS": "10000",
    "EARLYHELP_RELAY_RETRY_BACKOFF_MAX_MS": "5000",
    "EARLYHELP_LOG_JSON": "true",
    "EARLYHELP_LOG_LEVEL": "INFO",
}


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


@contextmanager
def running_hub(workdir: Path) -> Iterator[Hub]:
    """A fresh embedded broker and the four services on SQLite, under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_path=workdir / "broker.log")
    broker.start()
    try:
        hub = Hub(workdir, broker.bootstrap_servers, backend="sqlite", extra_env=PRODUCTION_ENV)
        hub.start(timeout_s=90)
        try:
            yield hub
        finally:
            hub.stop()
    finally:
        broker.stop()


@contextmanager
def bare_server(workdir: Path) -> Iterator[str]:
    """tests/bench/bare_app.py under uvicorn: uvloop + httptools, one worker, like a service."""
    with _uvicorn("tests.bench.bare_app:app", workdir / "bare.log") as base:
        yield base


@contextmanager
def peer_server(workdir: Path) -> Iterator[tuple[str, str]]:
    """tests/bench/peer_app.py (the `eventsourcing` peer) served as the bare app is, on its
    own SQLite file; its base URL and an Authorization header it accepts."""
    from tests.bench.peer_app import token

    secret = secrets.token_hex(32)
    env = {"PEER_DATABASE": str(workdir / "peer.db"), "PEER_TOKEN_SECRET": secret}
    with _uvicorn("tests.bench.peer_app:app", workdir / "peer.log", env) as base:
        yield base, f"Bearer {token(secret)}"


@contextmanager
def _uvicorn(app: str, log_file: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{app} did not start: see {log_file}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# --- (a) ------------------------------------------------------------------------------


@dataclass
class Throughput:
    bare: WrkResult
    intake: WrkResult
    validation_only: WrkResult | None
    backlog_metric: float
    backlog_rows: int
    drain: Drain
    stored_referrals: int

    @property
    def ratio(self) -> float:
        return self.intake.rps / self.bare.rps if self.bare.rps else 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        for run in (self.bare, self.intake, self.validation_only):
            if run is None:
                continue
            if run.non2xx:
                found.append(f"{run.target} answered {run.non2xx} non-2xx ({run.statuses})")
            if run.socket_error_count:
                found.append(f"{run.target} had socket errors {run.socket_errors}")
            if run.requests == 0:
                found.append(f"{run.target} completed no request")
        if self.drain.idle_after_s is None:
            found.append("the hub did not drain the backlog in time")
        if self.drain.final.dead_lettered:
            found.append(f"{self.drain.final.dead_lettered:g} records were dead-lettered")
        return found


def measure_throughput(
    workdir: Path,
    body_file: Path,
    warmup_file: Path,
    *,
    threads: int,
    connections: int,
    duration_s: int,
    warmup_s: int,
    with_validation_only: bool = True,
) -> Throughput:
    with running_hub(workdir) as hub, bare_server(workdir) as bare_base:
        intake_url = hub.url("intake") + "/v1/referrals"
        bare_url = bare_base + "/v1/referrals"
        validated_url = bare_base + "/v1/referrals-validated"
        # The bare app gets the same request, bearer token included, and ignores it.
        wrk = {
            "threads": threads,
            "connections": connections,
            "body_file": body_file,
            "authorization": hub.auth()["Authorization"],
        }
        warm = wrk | {"body_file": warmup_file, "duration_s": warmup_s}
        if warmup_s:
            log(f"(a) warm-up: {warmup_s}s each on the bare app and intake")
            run_wrk(bare_url, target="bare", **warm)
            run_wrk(intake_url, target="intake", **warm)
            if with_validation_only:
                run_wrk(validated_url, target="validation only", **warm)
            settled = wait_until_idle(hub, since=time.monotonic())
            if settled.idle_after_s is None:
                raise BenchError("the hub did not drain the warm-up: " + hub.logs_tail())
        log(f"(a) bare endpoint: wrk -t{threads} -c{connections} -d{duration_s}s")
        bare = run_wrk(bare_url, target="bare", duration_s=duration_s, **wrk)
        log(f"    {bare.rps:,.0f} req/s, p50 {bare.p50_ms:.1f} ms, p99 {bare.p99_ms:.1f} ms")
        log(f"(a) intake: wrk -t{threads} -c{connections} -d{duration_s}s")
        intake = run_wrk(intake_url, target="intake", duration_s=duration_s, **wrk)
        ended = time.monotonic()
        backlog_rows = count_rows(hub.database_url("intake"), "outbox")
        backlog_metric = outbox_backlog_metric(hub)
        log(f"    {intake.rps:,.0f} req/s, p50 {intake.p50_ms:.1f} ms, p99 {intake.p99_ms:.1f} ms")
        log(f"    outbox backlog: {backlog_rows} rows (metric said {backlog_metric:g})")
        drain = wait_until_idle(hub, since=ended)
        empty, idle = _s(drain.outbox_empty_after_s), _s(drain.idle_after_s)
        log(f"    outbox empty after {empty}, hub idle after {idle}")
        stored = count_rows(hub.database_url("intake"), "event_store", event_type=REFERRAL_RECEIVED)
        validation_only = None
        if with_validation_only:
            log(f"(a) context: the bare app validating the body only, -d{duration_s}s")
            validation_only = run_wrk(
                validated_url, target="validation only", duration_s=duration_s, **wrk
            )
            log(f"    {validation_only.rps:,.0f} req/s, p99 {validation_only.p99_ms:.1f} ms")
        return Throughput(
            bare, intake, validation_only, backlog_metric, backlog_rows, drain, stored
        )


# --- (a-peer) intake against the eventsourcing peer (issue 19) --------------------------


@dataclass
class PeerRound:
    intake: WrkResult
    peer: WrkResult
    floor: WrkResult

    @property
    def ratio(self) -> float:
        """Intake's req/s ÷ the peer's."""
        return self.intake.rps / self.peer.rps if self.peer.rps else 0.0


@dataclass
class PeerComparison:
    rounds: list[PeerRound]
    # py-spy's samples of intake during its first round.
    profile: Profile | None = None

    @property
    def problems(self) -> list[str]:
        found = []
        for number, r in enumerate(self.rounds, start=1):
            for run in (r.intake, r.peer, r.floor):
                if run.non2xx:
                    found.append(f"round {number}: {run.target} answered {run.non2xx} non-2xx")
                if run.socket_error_count:
                    found.append(f"round {number}: {run.target} socket errors {run.socket_errors}")
                if run.requests == 0:
                    found.append(f"round {number}: {run.target} completed no request")
        return found


def cpu_ms_per_request(run: WrkResult, label: str) -> float:
    """CPU milliseconds the server process `label` spent per request completed."""
    if run.cpu is None or not run.requests:
        return float("nan")
    return run.cpu.cores.get(label, 0.0) * run.cpu.wall_s * 1000 / run.requests


def measure_against_peer(
    workdir: Path,
    body_files: list[Path],
    warmup_file: Path,
    *,
    threads: int,
    connections: int,
    duration_s: int,
    warmup_s: int,
) -> PeerComparison:
    """Intake alone (its broker, SQLite), the eventsourcing peer and the validation-only
    floor, each served by one uvicorn worker, measured by the same wrk, alternated: one
    round per body file, so that no referral intake sees twice is matched to the first."""
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_path=workdir / "broker.log")
    broker.start()
    hub = Hub(
        workdir,
        broker.bootstrap_servers,
        backend="sqlite",
        services=("intake",),
        extra_env=PRODUCTION_ENV,
    )
    try:
        hub.start(timeout_s=90)
        with bare_server(workdir) as bare_base, peer_server(workdir) as (peer_base, peer_auth):
            common = {"threads": threads, "connections": connections}
            targets = [
                ("intake", hub.url("intake") + "/v1/referrals", hub.auth()["Authorization"]),
                ("peer", peer_base + "/v1/referrals", peer_auth),
                ("validation only", bare_base + "/v1/referrals-validated", peer_auth),
            ]
            if warmup_s:
                log(f"(a-peer) warm-up: {warmup_s}s each on intake, the peer and the floor")
                for name, url, auth in targets:
                    run_wrk(
                        url,
                        body_file=warmup_file,
                        target=name,
                        duration_s=warmup_s,
                        authorization=auth,
                        **common,
                    )
            measured = []
            profile = None
            for number, body_file in enumerate(body_files, start=1):
                runs = []
                for name, url, auth in targets:
                    log(f"(a-peer) round {number}, {name}: wrk -t{threads} -c{connections}")
                    sampling = None
                    if number == 1 and name == "intake":
                        sampling = profiling.start(
                            hub.pid("intake"), duration_s, workdir / "intake-profile.txt"
                        )
                    run = run_wrk(
                        url,
                        body_file=body_file,
                        target=name,
                        duration_s=duration_s,
                        authorization=auth,
                        **common,
                    )
                    log(f"    {run.rps:,.0f} req/s, p50 {run.p50_ms:.1f}, p99 {run.p99_ms:.1f} ms")
                    if sampling is not None:
                        profile = profiling.finish(
                            sampling, workdir / "intake-profile.txt", "intake"
                        )
                    runs.append(run)
                measured.append(PeerRound(*runs))
                log(f"    intake ÷ peer: {measured[-1].ratio:.2f}")
        return PeerComparison(measured, profile)
    finally:
        hub.stop()
        broker.stop()


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


# --- (b) ------------------------------------------------------------------------------


@dataclass
class EndToEnd:
    run: OpenLoopRun
    latencies_ms: dict[str, float]  # family id -> recorded_at - send time
    missing: list[str]
    drain: Drain
    warmup: int
    state_before: HubState
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.run.failed:
            statuses = sorted({str(s.status or s.error) for s in self.run.failed})
            found.append(f"{len(self.run.failed)} referrals were not accepted: {statuses[:5]}")
        if self.missing:
            found.append(f"{len(self.missing)} accepted referrals never reached the chronology")
        if self.drain.final.dead_lettered:
            found.append(f"{self.drain.final.dead_lettered:g} records were dead-lettered")
        return found


def measure_end_to_end(
    workdir: Path, bodies: list[bytes], *, rate: float, duration_s: float, warmup: int
) -> EndToEnd:
    with running_hub(workdir) as hub:
        url = hub.url("intake") + "/v1/referrals"
        if warmup:
            # Joins the consumer groups and warms every path before the clock starts.
            log(f"(b) warm-up: {warmup} referrals, then wait for the hub to settle")
            warm = open_loop(
                url,
                bodies[:warmup],
                rate=min(rate, 20.0),
                duration_s=warmup / min(rate, 20.0),
                auth=hub.auth(),
            )
            if warm.failed:
                raise BenchError(f"warm-up referrals failed: {warm.failed[0]}")
        settled = wait_until_idle(hub, since=time.monotonic(), timeout_s=120)
        if settled.idle_after_s is None or settled.final.chronology_referrals < warmup:
            raise BenchError("the hub never settled before (b):\n" + hub.logs_tail())
        before = hub_state(hub)
        log(f"(b) open loop: {rate:g} referrals/s for {duration_s:g}s")
        run = open_loop(url, bodies[warmup:], rate=rate, duration_s=duration_s, auth=hub.auth())
        ended = time.monotonic()
        log(f"    sent {len(run.sent)}, accepted {len(run.accepted)}; waiting for caseplan")
        drain = wait_until_idle(hub, since=ended, timeout_s=120)
        log(f"    hub idle after {_s(drain.idle_after_s)}; reading the chronologies")
        # Partners are not told the family (issue 14): the front door's view names it.
        referral = hub.url("intake") + "/v1/referrals/{}"
        views = fetch_all(
            {s.referral_id: referral.format(s.referral_id) for s in run.accepted},
            auth=hub.auth(STAFF),
        )
        sent_by_family = {
            views[s.referral_id][1]["family_id"]: s
            for s in run.accepted
            if views.get(s.referral_id, (0, {}))[0] == 200
        }
        base = hub.url("caseplan") + "/v1/families/{}/chronology"
        pages = fetch_all({fid: base.format(fid) for fid in sent_by_family}, auth=hub.auth(STAFF))
        latencies: dict[str, float] = {}
        missing: list[str] = []
        for family_id, sent in sent_by_family.items():
            status, page = pages.get(family_id, (0, {}))
            entries = page.get("entries", []) if status == 200 else []
            entry = next((e for e in entries if e.get("event_type") == REFERRAL_RECEIVED), None)
            if entry is None:
                missing.append(family_id)
                continue
            recorded = datetime.fromisoformat(entry["recorded_at"]).timestamp()
            latencies[family_id] = (recorded - sent.sent_at) * 1000
        return EndToEnd(run, latencies, missing, drain, warmup, before)
