"""`make chaos`: the whole hub under faults, and what it lost, doubled or got wrong.

The four services run as separate processes (tests/harness.py) on a PostgreSQL instance
this run starts itself (tests/chaos/postgres.py) and an embedded broker of its own. A
steady stream of referrals lives its whole life through their HTTP APIs (received,
triaged, allocated, assessed, decided at panel, reviewed, closed), and a partner's
webhook receiver (tests/webhook_receiver.py) takes every event its subscription may see.
Meanwhile the run injects, one after another:

- a PostgreSQL restart (every session cut);
- a broker restart (the embedded broker keeps nothing), followed by what
  docs/architecture.md prescribes: `earlyhelp topics`, then `earlyhelp republish` of each
  producing service from position 1;
- SIGKILL of each service, then a start;
- the database session of each producing service's leading outbox relay terminated;
- a consumer stalled past its poll interval (SIGSTOP, then SIGCONT).

At the end it lets the hub settle and counts:

- events: what the services' stores hold;
- lost: events a consuming projection never applied (not in its inbox), whatever the
  reason (a dead-lettered record counts here too);
- dead-lettered: records the services sent to a DLQ, by the fault running at the time;
- duplicated effects: webhooks the receiver accepted twice for one webhook-id;
- differences: rows of every projection that differ from a fresh `earlyhelp rebuild` of
  it (services stopped), table by table.

It prints its figures and writes them into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import httpx
import sqlalchemy as sa

from hub import outbox
from hub.broker import EmbeddedBroker, free_port
from hub.cli import load_definition
from intake.schemas import TriageDecision
from tests.chaos.postgres import OwnPostgres
from tests.harness import Hub, count_rows, dispose_engine, query, wait_for
from tests.referral_data import DistinctReferrals
from tests.webhook_receiver import WebhookReceiver

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT = REPO_ROOT / "docs" / "reliability.md"
SERVICES = ("intake", "allocation", "caseplan", "notifications")
PRODUCERS = ("intake", "allocation", "caseplan")
SCHOOL, FRONT_DOOR, MANAGER = (
    "harlesden-primary-school",
    "front-door-demo",
    "harlesden-team-manager",
)
CHAIR, PRACTITIONER = "brent-panel-chair", "samira-okafor"
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
# The relay's leadership lock (hub.outbox): a session-level advisory lock on this bigint key,
# which pg_locks shows as classid (high 32 bits), objid (low 32 bits) and objsubid 1.
RELAY_LOCK_KEY = getattr(outbox, "_RELAY_LOCK_KEY", 0x52454C4159)
# A consumer stalled longer than this leaves its group (kafka-python's max.poll.interval.ms).
POLL_INTERVAL_MS = 6000
STALL_S = 10.0
# Columns that say when a row was written or fanned out, not what the events said.
WALL_CLOCK_COLUMNS = {
    "recorded_at",
    "journalled_at",
    "handled_at",
    "updated_at",
    "fanned_out",
    "traceparent",
    "tracestate",
    "seq",
}
CHAOS_ENV = {
    "EARLYHELP_KAFKA_MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
    "EARLYHELP_LOG_LEVEL": "INFO",
    # The partner's receiver listens on 127.0.0.1 without TLS.
    "EARLYHELP_NOTIFICATIONS_ALLOW_HTTP_WEBHOOKS": "true",
}


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)


# --- the workload -----------------------------------------------------------------------


class Transient(Exception):
    """The hub did not answer this time (a fault); the step is tried again."""


@dataclass
class Workload:
    hub: Hub
    step_timeout_s: float = 120.0
    halt: threading.Event = field(default_factory=threading.Event)
    completed: int = 0
    abandoned: list[str] = field(default_factory=list)
    requests: int = 0
    retried: int = 0
    panel_id: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _referrals: DistinctReferrals = field(
        default_factory=lambda: DistinctReferrals(seed=int(time.time()), first_nhs_base=940_000_000)
    )

    def call(self, client: httpx.Client, method: str, service: str, path: str, who: str, *,
             expect: int, key: str | None = None, **kwargs: Any) -> dict:  # fmt: skip
        """One request, tried again through faults with the same Idempotency-Key."""
        headers = self.hub.auth(who) | ({"Idempotency-Key": key} if key else {})
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            try:
                with self._lock:
                    self.requests += 1
                response = client.request(
                    method, self.hub.url(service) + path, headers=headers, **kwargs
                )
                if response.status_code == expect:
                    return response.json()
                if response.status_code < 500 and response.status_code != 409:
                    raise AssertionError(
                        f"{method} {service}{path}: {response.status_code} {response.text[:300]}"
                    )
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.halt.is_set():
                raise Transient(f"{method} {service}{path} never answered {expect}")
            with self._lock:
                self.retried += 1
            time.sleep(0.5)

    def until(self, what: str, found) -> Any:
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            try:
                value = found()
            except (httpx.HTTPError, AssertionError, KeyError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline or self.halt.is_set():
                raise Transient(f"{what}: not within {self.step_timeout_s:g}s")
            time.sleep(0.3)

    def create_panel(self, client: httpx.Client) -> None:
        self.panel_id = self.call(
            client, "POST", "allocation", "/v1/panels", CHAIR, expect=201, key="chaos-panel",
            json={
                "locality": "brent-harlesden",
                "name": "Harlesden early intervention coordination group",
                "meets_on": (date.today() + timedelta(days=7)).isoformat(),
                "members": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
            },
        )["panel_id"]  # fmt: skip

    def life(self, client: httpx.Client, number: int) -> None:
        """One referral from a school to its case's closure."""
        body = self._referrals.next_body("CHAOS")
        today = date.today()
        for years, child in zip((8, 11), body["children"], strict=False):
            child["date_of_birth"] = (today - timedelta(days=365 * years + 30)).isoformat()
        tag = f"chaos-{number}"
        referral = self.call(
            client, "POST", "intake", "/v1/referrals", SCHOOL, expect=202, key=tag, json=body
        )
        referral_id = referral["referral_id"]
        triage = self.call(
            client, "POST", "intake", f"/v1/referrals/{referral_id}/triage", FRONT_DOOR,
            expect=200, key=f"{tag}-triage", json=DECISION,
        )["triage"]  # fmt: skip
        case_id = triage["case_id"]

        self.until(f"case {case_id} queued", lambda: self._queued(client, case_id))
        allocated = self.call(
            client, "POST", "allocation", f"/v1/cases/{case_id}/allocation", MANAGER,
            expect=201, key=f"{tag}-allocate", json={"auto": True},
        )  # fmt: skip
        worker_id = allocated["lead_professional"]["worker_id"]

        def case(until=lambda view: True):
            def read():
                response = client.get(
                    self.hub.url("caseplan") + f"/v1/cases/{case_id}",
                    headers=self.hub.auth(MANAGER),
                )
                return response.status_code == 200 and until(response.json()) and response.json()

            return read

        self.until(f"case {case_id} opened in case plan", case())
        assessed = self.call(
            client, "POST", "caseplan", f"/v1/cases/{case_id}/assessments", MANAGER,
            expect=201, key=f"{tag}-assess", json=ASSESSMENT,
        )  # fmt: skip
        needs = [need["need_id"] for need in assessed["needs"]]

        def on_agenda() -> bool:
            agenda = client.get(
                self.hub.url("allocation") + f"/v1/panels/{self.panel_id}",
                headers=self.hub.auth(CHAIR),
            ).json()["agenda"]
            return any(item["case_id"] == case_id for item in agenda)

        self.until(f"case {case_id} on the panel's agenda", on_agenda)
        self.call(
            client, "POST", "allocation", f"/v1/panels/{self.panel_id}/decisions", CHAIR,
            expect=201, key=f"{tag}-panel",
            json={
                "case_id": case_id,
                "package": [{
                    "provider_id": "nw-london-talking-therapies",
                    "service_id": "adult-talking-therapies",
                    "start_date": (today + timedelta(days=14)).isoformat(),
                    "intensity": "standard",
                }],
                "lead_professional": {"worker_id": worker_id},
                "members_present": [{"name": "Grace Mensah", "agency": "Brent early help"}],
            },
        )  # fmt: skip
        self.until(f"case {case_id} planned", case(lambda view: view["package"]))
        self.call(
            client, "POST", "caseplan", f"/v1/cases/{case_id}/reviews", PRACTITIONER,
            expect=201, key=f"{tag}-review",
            json={
                "progress": [{"need_id": n, "rating": "achieved", "note": "Seen"} for n in needs],
                "next_review_date": (today + timedelta(weeks=6)).isoformat(),
            },
        )  # fmt: skip
        self.call(
            client, "POST", "caseplan", f"/v1/cases/{case_id}/closure", PRACTITIONER,
            expect=201, key=f"{tag}-close",
            json={"reason": "needs_met", "outcomes": [{"need_id": n, "achieved": True}
                                                      for n in needs]},
        )  # fmt: skip

    def _queued(self, client: httpx.Client, case_id: str) -> bool:
        page = client.get(
            self.hub.url("allocation") + "/v1/allocations",
            params={"status": "unallocated", "locality": "brent-harlesden", "limit": 200},
            headers=self.hub.auth(MANAGER),
        ).json()
        return any(item["case_id"] == case_id for item in page["items"])

    def worker(self, numbers) -> None:
        with httpx.Client(timeout=15) as client:
            while not self.halt.is_set():
                number = next(numbers)
                try:
                    self.life(client, number)
                    with self._lock:
                        self.completed += 1
                except Transient as exc:
                    self.abandoned.append(str(exc))
                except Exception:
                    self.abandoned.append(traceback.format_exc(limit=3))


ASSESSMENT = {
    "factors": ["3B", "4B"],
    "needs": [
        {"outcome": "good_education", "description": "Attendance has fallen."},
        {"outcome": "improved_family_relationships", "description": "Arguments at home."},
    ],
    "recommended_level_of_need": "early_help",
    "people": [
        {
            "role": role,
            "name": name,
            "findings": [
                {"domain": domain, "strengths": "Warm and caring", "needs": "Routines"}
                for domain in ("child_development", "parenting_capacity", "family_and_environment")
            ],
        }
        for role, name in (("child", "Child One"), ("parent_carer", "Parent One"))
    ],
    "views": {"child": "Wants things calmer.", "family": "Wants help with routines."},
    "complete": True,
}


# --- the faults -------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    started: datetime
    ended: datetime | None = None
    detail: str = ""


class Faults:
    def __init__(self, hub: Hub, postgres: OwnPostgres, broker: EmbeddedBroker) -> None:
        self.hub, self.postgres, self.broker = hub, postgres, broker
        self.done: list[Fault] = []

    def _inject(self, name: str, action) -> None:
        fault = Fault(name, datetime.now(UTC))
        log(f"fault: {name}")
        fault.detail = action() or ""
        fault.ended = datetime.now(UTC)
        self.done.append(fault)
        log(f"fault over: {name} {fault.detail}")

    def postgres_restart(self) -> None:
        self._inject("PostgreSQL restart", self.postgres.restart)

    def broker_restart(self) -> None:
        def restart() -> str:
            self.broker.kill()
            self.broker.start()
            outputs = [self._earlyhelp("intake", "topics")]
            for service in PRODUCERS:
                outputs.append(
                    self._earlyhelp(service, "republish", service, "--from-position", "1")
                )
            return "; ".join(outputs)

        self._inject("broker restart + topics + republish", restart)

    def kill(self, service: str) -> None:
        def kill_and_start() -> None:
            self.hub.kill_service(service)
            self.hub.start_service(service, timeout_s=120)

        self._inject(f"SIGKILL {service}", kill_and_start)

    def relay_sessions(self) -> None:
        def terminate() -> str:
            ended = []
            for service in PRODUCERS:
                url = self.hub.database_url(service)
                rows = query(
                    url,
                    "SELECT pg_terminate_backend(l.pid) AS ended FROM pg_locks l "
                    "JOIN pg_database d ON d.oid = l.database "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND d.datname = current_database() AND l.classid = :high "
                    "AND l.objid = :low AND l.objsubid = 1",
                    high=RELAY_LOCK_KEY >> 32,
                    low=RELAY_LOCK_KEY & 0xFFFFFFFF,
                )
                ended.append(f"{service}: {sum(1 for r in rows if r['ended'])}")
            return "sessions ended " + ", ".join(ended)

        self._inject("relay leaders' sessions terminated", terminate)

    def stall(self, service: str) -> None:
        def stop_and_continue() -> None:
            pid = self.hub.pid(service)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(STALL_S)
            os.kill(pid, signal.SIGCONT)

        self._inject(f"{service} stalled {STALL_S:g}s (SIGSTOP/SIGCONT)", stop_and_continue)

    def _earlyhelp(self, service: str, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            env=self.hub.env(service),
            capture_output=True,
            text=True,
            timeout=180,
        )
        text = (result.stdout + result.stderr).strip().splitlines()
        return f"`earlyhelp {' '.join(args)}` exit {result.returncode}: {text[-1] if text else ''}"

    def which(self, moment: datetime) -> str:
        """The fault running at a moment, or the one that ended last before it."""
        earlier = [f for f in self.done if f.started <= moment]
        if not earlier:
            return "before any fault"
        last = earlier[-1]
        if last.ended is None or moment <= last.ended:
            return last.name
        return f"after {last.name}"


# --- measuring --------------------------------------------------------------------------


def lost_events(hub: Hub) -> dict[str, int]:
    """{consumer/projection: events of its producers' stores it never applied}."""
    stored = {
        service: query(hub.database_url(service), "SELECT event_id, event_type FROM event_store")
        for service in PRODUCERS
    }
    lost: dict[str, int] = {}
    for service in SERVICES:
        definition = load_definition(service)
        applied = {
            (row["projection"], row["event_id"])
            for row in query(hub.database_url(service), "SELECT projection, event_id FROM inbox")
        }
        producers = [
            p for p in PRODUCERS if p != service and f"earlyhelp.{p}.v1" in definition.consumes
        ]
        for projection in definition.projections:
            missing = sum(
                1
                for producer in producers
                for event in stored[producer]
                if projection.handles(event["event_type"])
                and (projection.name, event["event_id"]) not in applied
            )
            if missing:
                lost[f"{service}/{projection.name}"] = missing
    return lost


def snapshot(hub: Hub, service: str) -> dict[str, Counter]:
    """Every projection table of the service, its rows without wall-clock columns."""
    engine = sa.create_engine(hub.database_url(service), poolclass=sa.pool.NullPool)
    tables: dict[str, Counter] = {}
    try:
        with engine.connect() as conn:
            for projection in load_definition(service).projections:
                for table in projection.tables:
                    rows = Counter()
                    for row in conn.execute(sa.select(table)).mappings():
                        kept = {k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS}
                        rows[json.dumps(kept, default=str, sort_keys=True)] += 1
                    tables[table.name] = rows
    finally:
        engine.dispose()
    return tables


def differences(live: dict[str, Counter], rebuilt: dict[str, Counter]) -> dict[str, int]:
    found = {}
    for table in live:
        changed = sum(((live[table] - rebuilt[table]) + (rebuilt[table] - live[table])).values())
        if changed:
            found[table] = changed
    return found


def dead_lettered(hub: Hub, faults: Faults) -> Counter:
    """Records each service logged as dead-lettered, by the fault running at the time."""
    found: Counter = Counter()
    for service in SERVICES:
        for line in hub.log(service).splitlines():
            if "record dead-lettered" not in line or not line.startswith("{"):
                continue
            entry = json.loads(line)
            moment = datetime.fromisoformat(entry["timestamp"])
            found[f"{service}: {faults.which(moment)}"] += 1
    return found


def duplicated_webhooks(receiver: WebhookReceiver) -> int:
    accepted = Counter(r["webhook_id"] for r in receiver.records() if r["accepted"])
    return sum(count - 1 for count in accepted.values() if count > 1)


def stored_events(hub: Hub) -> dict[str, int]:
    return {s: count_rows(hub.database_url(s), "event_store") for s in PRODUCERS}


# --- the run ----------------------------------------------------------------------------


def run(workdir: Path, workers: int, gap_s: float) -> dict[str, Any]:
    started = time.monotonic()
    postgres = OwnPostgres(workdir / "postgres").start()
    (workdir / "broker").mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_path=workdir / "broker" / "broker.log")
    broker.start()
    receiver = WebhookReceiver(workdir / "receiver").start()
    hub = Hub(
        workdir / "hub",
        broker.bootstrap_servers,
        backend="postgresql",
        postgres_admin_url=postgres.admin_url,
        extra_env=CHAOS_ENV,
    )
    try:
        hub.start(timeout_s=120)
        log(f"hub up on PostgreSQL :{postgres.port} and broker {broker.bootstrap_servers}")
        with httpx.Client(timeout=15) as client:
            created = client.post(
                hub.url("notifications") + "/v1/subscriptions",
                json={
                    "event_types": ["earlyhelp.referral.*", "earlyhelp.case.*"],
                    "delivery": {"type": "webhook", "url": receiver.url(SCHOOL)},
                },
                headers=hub.auth(SCHOOL),
            )
            if created.status_code != 201:
                raise RuntimeError(f"subscription refused: {created.text}")
            receiver.configure(SCHOOL, secret=created.json()["secret"])
            workload = Workload(hub)
            workload.create_panel(client)
        numbers = itertools.count(1)
        threads = [
            threading.Thread(target=workload.worker, args=(numbers,), daemon=True)
            for _ in range(workers)
        ]
        for thread in threads:
            thread.start()

        faults = Faults(hub, postgres, broker)
        schedule = [
            faults.postgres_restart,
            faults.broker_restart,
            *(lambda s=s: faults.kill(s) for s in SERVICES),
            faults.relay_sessions,
            lambda: faults.stall("caseplan"),
        ]
        time.sleep(gap_s)
        for inject in schedule:
            inject()
            time.sleep(gap_s)
        log("faults done; letting the lives in flight finish")
        workload.halt.set()
        for thread in threads:
            thread.join(workload.step_timeout_s + 30)

        log("settling")
        wait_for(
            lambda: all(count_rows(hub.database_url(s), "outbox") == 0 for s in PRODUCERS),
            120,
            "the outboxes never emptied",
        )
        settle_deadline = time.monotonic() + 120
        lost = lost_events(hub)
        while lost and time.monotonic() < settle_deadline:
            time.sleep(2)
            lost = lost_events(hub)
        wait_for(
            lambda: (
                query(
                    hub.database_url("notifications"),
                    "SELECT COUNT(*) AS n FROM deliveries WHERE status IN ('pending', 'retrying')",
                )[0]["n"]
                == 0
            ),
            120,
            "webhook deliveries never finished",
        )
        events = stored_events(hub)
        parked = dead_lettered(hub, faults)
        duplicates = duplicated_webhooks(receiver)
        webhooks = sum(1 for r in receiver.records() if r["accepted"])

        log("stopping the services and rebuilding every projection")
        hub._terminate(list(SERVICES))
        diffs: dict[str, dict[str, int]] = {}
        rebuild_outputs = {}
        for service in SERVICES:
            live = snapshot(hub, service)
            result = subprocess.run(
                [sys.executable, "-m", "hub.cli", "rebuild", service],
                env=hub.env(service),
                capture_output=True,
                text=True,
                timeout=300,
            )
            rebuild_outputs[service] = (result.returncode, (result.stdout + result.stderr)[-500:])
            if result.returncode != 0:
                raise RuntimeError(f"rebuild of {service} failed: {rebuild_outputs[service]}")
            diffs[service] = differences(live, snapshot(hub, service))
        return {
            "minutes": round((time.monotonic() - started) / 60, 1),
            "events": events,
            "lives_completed": workload.completed,
            "lives_abandoned": workload.abandoned,
            "requests": workload.requests,
            "retried_requests": workload.retried,
            "faults": [(f.name, f.detail) for f in faults.done],
            "lost": lost,
            "dead_lettered": dict(parked),
            "webhooks_accepted": webhooks,
            "duplicated_effects": duplicates,
            "differences": {s: d for s, d in diffs.items() if d},
        }
    finally:
        hub.stop()
        receiver.stop()
        broker.stop()
        for service in SERVICES:
            with contextlib.suppress(KeyError):
                dispose_engine(hub.database_url(service))
        postgres.stop()


def report(figures: dict[str, Any]) -> str:
    events = sum(figures["events"].values())
    lost = sum(figures["lost"].values())
    parked = sum(figures["dead_lettered"].values())
    diffs = sum(n for tables in figures["differences"].values() for n in tables.values())
    by_service = ", ".join(f"{k} {v}" for k, v in figures["events"].items())
    rows = [
        ("events stored", f"{events} ({by_service})"),
        ("referral lives completed (received to closed)", figures["lives_completed"]),
        ("lives abandoned (a step not done within 120 s)", len(figures["lives_abandoned"])),
        (
            "HTTP requests (of which retried through a fault)",
            f"{figures['requests']} ({figures['retried_requests']})",
        ),
        ("faults injected", len(figures["faults"])),
        ("**lost** (stored, never applied by a consumer)", f"**{lost}**"),
        ("dead-lettered records", parked),
        ("webhooks accepted by the partner", figures["webhooks_accepted"]),
        (
            "**duplicated effects** (a webhook accepted twice)",
            f"**{figures['duplicated_effects']}**",
        ),
        ("**differences** (live projection rows vs a fresh rebuild)", f"**{diffs}**"),
        ("run time", f"{figures['minutes']} min"),
    ]
    lines = [f"| {label} | {value} |" for label, value in rows]
    detail = ["", "Faults, in order, and what the recovery commands said:", ""]
    detail += [f"1. {name}{': ' + text if text else ''}" for name, text in figures["faults"]]
    if figures["lost"]:
        detail += ["", "Lost, by consumer and projection:", ""]
        detail += [f"- {k}: {v}" for k, v in figures["lost"].items()]
    if figures["dead_lettered"]:
        detail += ["", "Dead-lettered, by service and the fault running at the time:", ""]
        detail += [f"- {k}: {v}" for k, v in figures["dead_lettered"].items()]
    if figures["differences"]:
        detail += ["", "Differences, by service and table (rows in one and not the other):", ""]
        detail += [
            f"- {service}.{table}: {n}"
            for service, tables in figures["differences"].items()
            for table, n in tables.items()
        ]
    if figures["lives_abandoned"]:
        detail += ["", "Abandoned lives (first 5):", ""]
        detail += [
            f"- {text.strip().splitlines()[-1][:200]}" for text in figures["lives_abandoned"][:5]
        ]
    return "\n".join(["| measure | figure |", "|---|---|", *lines, *detail])


MARK_START, MARK_END = "<!-- chaos:start -->", "<!-- chaos:end -->"


def write_report(text: str) -> None:
    stamp = f"Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on this machine (`make chaos`).\n\n"
    page = REPORT.read_text()
    before, rest = page.split(MARK_START, 1)
    _, after = rest.split(MARK_END, 1)
    REPORT.write_text(f"{before}{MARK_START}\n{stamp}{text}\n{MARK_END}{after}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="referral lives in parallel")
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    workdir = Path(mkdtemp(prefix="earlyhelp-chaos-"))
    log(f"work directory {workdir}")
    figures = run(workdir, args.workers, args.gap)
    text = report(figures)
    print(text, flush=True)
    (workdir / "figures.json").write_text(json.dumps(figures, indent=2, default=str))
    if not args.no_write:
        write_report(text)
        log(f"written to {REPORT.relative_to(REPO_ROOT)}")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
