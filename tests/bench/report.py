"""docs/benchmarks.md: the figures of one run, with the machine, the method and the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tests.bench.fanout import FanOut
from tests.bench.measure import EndToEnd, PeerComparison, Throughput, cpu_ms_per_request
from tests.bench.profile import Profile
from tests.bench.system import CpuUsage
from tests.bench.token_burst import TokenBurst

RATIO_TARGET = 0.5
E2E_P99_TARGET_MS = 250.0
REFERRAL_PATH_RATIO_TARGET = 0.6  # issue 3: the full referral path at -c32
REFERRAL_PATH_P99_TARGET_MS = 100.0
HEALTHZ_DURING_BURST_TARGET_MS = 100.0  # issue 15
PEER_RATIO_TARGET = 1.5  # issue 19: intake req/s ÷ the eventsourcing peer's
FANOUT_FLOOR_RATIO_TARGET = 0.5  # issue 19: deliveries per CPU-second ÷ the signed-POST floor's
FANOUT_P99_TARGET_MS = 500.0  # issue 19: at a steady 50 events/s to 20 subscribers


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the value below which `pct`% of the sample lies)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _yes(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**not met**")


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f} ms"


def _opt_s(value: float | None) -> str:
    return "not within the wait" if value is None else f"{value:.1f} s"


def targets(
    a: Throughput | None,
    b: EndToEnd | None,
    c: Sequence[FanOut] = (),
    d: TokenBurst | None = None,
    peer: PeerComparison | None = None,
) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
    if peer is not None and peer.rounds:
        rows += _peer_rows(peer)
    if a is not None:
        valid = not a.problems
        rows.append(
            (
                "(a) intake req/s ÷ bare req/s",
                f">= {RATIO_TARGET}",
                f"{a.ratio:.2f}" + ("" if valid else " (run invalid)"),
                a.ratio >= RATIO_TARGET if valid else False,
            )
        )
        rows.append(
            (
                "(a') full referral path (issue 3): intake ÷ bare, and p99",
                f">= {REFERRAL_PATH_RATIO_TARGET}, < {REFERRAL_PATH_P99_TARGET_MS:.0f} ms",
                f"{a.ratio:.2f}, {_ms(a.intake.p99_ms)}" + ("" if valid else " (run invalid)"),
                (
                    a.ratio >= REFERRAL_PATH_RATIO_TARGET
                    and a.intake.p99_ms < REFERRAL_PATH_P99_TARGET_MS
                )
                if valid
                else False,
            )
        )
    if b is not None:
        p99 = percentile(list(b.latencies_ms.values()), 99)
        complete = not b.problems
        rows.append(
            (
                "(b) end-to-end p99, POST to chronology",
                f"< {E2E_P99_TARGET_MS:.0f} ms",
                _ms(p99) + ("" if complete else " (incomplete)"),
                (p99 < E2E_P99_TARGET_MS) if complete and not math.isnan(p99) else False,
            )
        )
    if c:
        rows += _fanout_rows(c)
    if d is not None:
        rows.append(_token_burst_row(d))
    return rows


def _cpu_table(columns: Sequence[tuple[str, CpuUsage | None]]) -> list[str]:
    present = [(name, usage) for name, usage in columns if usage is not None]
    if not present:
        return []
    labels = sorted({label for _n, usage in present for label in usage.cores})
    lines = [
        "| process | " + " | ".join(name for name, _u in present) + " |",
        "|---|" + "---:|" * len(present),
    ]
    for label in labels:
        cells = [f"{usage.cores.get(label, 0.0):.2f}" for _n, usage in present]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| everything else (bench driver, other users) | "
        + " | ".join(f"{usage.other_cores:.2f}" for _n, usage in present)
        + " |"
    )
    lines.append(
        "| **machine busy** | "
        + " | ".join(
            f"**{usage.machine_busy_cores:.2f} of {usage.nproc}**" for _n, usage in present
        )
        + " |"
    )
    return lines


def render(
    facts: dict[str, str],
    a: Throughput | None,
    b: EndToEnd | None,
    *,
    settings: dict[str, object],
    fanout: Sequence[FanOut] = (),
    token_burst: TokenBurst | None = None,
    peer: PeerComparison | None = None,
) -> str:
    out: list[str] = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m tests.bench`, code in `tests/bench/`); "
        "rerun it rather than editing this page. Figures come from one run on the "
        "machine below; they are not asserted anywhere.",
        "",
        "## Run",
        "",
        "| | |",
        "|---|---|",
        f"| Date | {facts['date']} |",
        f"| CPUs (`nproc`) | {facts['nproc']} |",
        f"| CPU model | {facts['cpu']} |",
        f"| Python | {facts['python']} |",
        f"| Kernel, memory | {facts['kernel']}, {facts['memory']} |",
        f"| Load average at start | {facts['load_average']} |",
        "",
        "## Targets",
        "",
        "| Target | Wanted | Measured | Met |",
        "|---|---|---|---|",
    ]
    for name, wanted, measured, met in targets(a, b, fanout, token_burst, peer):
        out.append(f"| {name} | {wanted} | {measured} | {_yes(met)} |")
    if peer is not None and peer.rounds:
        out += _peer_section(peer, settings)
    if a is not None:
        out += _throughput_section(a, settings)
    if b is not None:
        out += _latency_section(b, settings)
    if fanout:
        out += _fanout_section(fanout)
    if token_burst is not None:
        out += _token_burst_section(token_burst, facts)
    profiles = [
        found
        for found in (
            peer.profile if peer is not None else None,
            *(run.profile for run in fanout),
        )
        if found is not None
    ]
    if profiles:
        out += _where_the_time_goes(profiles)
    out += _method(settings)
    out += _notes(facts, a, b)
    return "\n".join(out) + "\n"


def _throughput_section(a: Throughput, settings: dict[str, object]) -> list[str]:
    runs = [a.bare, a.intake] + ([a.validation_only] if a.validation_only is not None else [])

    def row(name: str, cell) -> str:
        return f"| {name} | " + " | ".join(cell(run) for run in runs) + " |"

    def errors(run) -> str:
        return "/".join(str(run.socket_errors[k]) for k in ("connect", "read", "write", "timeout"))

    header = "| | bare endpoint (async, no work) | intake `POST /v1/referrals` |"
    if a.validation_only is not None:
        header += " context: bare app, body validated only |"
    out = [
        "",
        "## (a) Intake accept throughput",
        "",
        f"`wrk -t{settings['threads']} -c{settings['connections']} "
        f"-d{settings['duration_s']}s`, POSTs of distinct referrals in the example's shape "
        f"(about {settings['body_bytes']} bytes of JSON each, {settings['referrals']:,} cycled; "
        "every one about children no other names, so intake's full path runs: auth, "
        "validation, matching, store, outbox), all servers in the same run.",
        "",
        header,
        "|---|" + "---:|" * len(runs),
        row("Requests/s", lambda r: f"{r.rps:,.0f}"),
        row("Latency p50", lambda r: _ms(r.p50_ms)),
        row("Latency p90", lambda r: _ms(r.p90_ms)),
        row("Latency p99", lambda r: _ms(r.p99_ms)),
        row("Latency max", lambda r: _ms(r.max_ms)),
        row("Requests completed", lambda r: f"{r.requests:,}"),
        row("Non-2xx responses", lambda r: f"{r.non2xx}"),
        row("Socket errors (connect/read/write/timeout)", errors),
        "",
        f"**Ratio intake ÷ bare: {a.ratio:.2f}** (target >= {RATIO_TARGET}).",
    ]
    if a.validation_only is not None and a.validation_only.rps and a.bare.rps:
        out += [
            "",
            "For context, not a target: the bare app validating each body against intake's "
            "own `ReferralSubmission` model, declared as intake declares it, and doing "
            "nothing else (no token, no matching, no database) served "
            f"**{a.validation_only.rps / a.bare.rps:.2f} of the bare endpoint** on its own. "
            "That is the highest ratio any intake could reach here, since it must do at "
            "least that much; intake ÷ this run = "
            f"{a.intake.rps / a.validation_only.rps:.2f}.",
        ]
    out += [
        "",
        f"- Outbox backlog right after the intake run: {a.backlog_rows:,} rows "
        f"(`earlyhelp_outbox_backlog` on intake's /metrics said {a.backlog_metric:,.0f}; "
        "the relay refreshes it about once a second).",
        f"- Intake's outbox was empty {_opt_s(a.drain.outbox_empty_after_s)} after the run; "
        f"the whole hub was idle (every outbox empty, every consumer caught up) "
        f"{_opt_s(a.drain.idle_after_s)} after it.",
        f"- Referrals stored by intake in (a), warm-up included: {a.stored_referrals:,}; "
        f"reached caseplan's chronology: {a.drain.final.chronology_referrals:,}.",
    ]
    if a.problems:
        out += ["", "**The run is invalid:** " + "; ".join(a.problems) + "."]
    cpu = _cpu_table(
        [("bare run", a.bare.cpu), ("intake run", a.intake.cpu)]
        + (
            [("validation-only run", a.validation_only.cpu)]
            if a.validation_only is not None
            else []
        )
    )
    if cpu:
        out += ["", "CPU used during each measured run, in cores (CPU seconds ÷ wall seconds):", ""]
        out += cpu
    return out


# --- (a-peer) intake against the eventsourcing peer (tests/bench/peer_app.py) -----------


def _peer_rows(p: PeerComparison) -> list[tuple[str, str, str, bool | None]]:
    valid = not p.problems
    ratios = [r.ratio for r in p.rounds]
    p99s = [r.intake.p99_ms for r in p.rounds]
    mark = "" if valid else " (run invalid)"
    return [
        (
            "(a-peer) intake req/s ÷ the eventsourcing peer's (issue 19), each round",
            f">= {PEER_RATIO_TARGET}",
            ", ".join(f"{x:.2f}" for x in ratios) + mark,
            min(ratios) >= PEER_RATIO_TARGET if valid else False,
        ),
        (
            "(a-peer) intake p99 at -c32 beside the peer (issue 19), each round",
            f"< {REFERRAL_PATH_P99_TARGET_MS:.0f} ms",
            ", ".join(_ms(x) for x in p99s) + mark,
            max(p99s) < REFERRAL_PATH_P99_TARGET_MS if valid else False,
        ),
    ]


def _peer_section(p: PeerComparison, settings: dict[str, object]) -> list[str]:
    columns = [(n, r) for n, r in enumerate(p.rounds, start=1)]

    def row(name: str, cell) -> str:
        cells = [cell(run) for _n, r in columns for run in (r.intake, r.peer, r.floor)]
        return f"| {name} | " + " | ".join(cells) + " |"

    labels = {"intake": "intake", "peer": "peer", "validation only": "bare"}

    def cpu(run) -> str:
        return _ms(cpu_ms_per_request(run, labels[run.target]))

    header = "| | " + " | ".join(
        f"round {n}: {name}" for n, _r in columns for name in ("intake", "peer", "floor")
    )
    out = [
        "",
        "## (a-peer) Intake against the eventsourcing peer",
        "",
        f"`wrk -t{settings['threads']} -c{settings['connections']} "
        f"-d{settings['duration_s']}s`, distinct referral bodies (each round its own), each "
        "server one uvicorn worker on uvloop + httptools, run one after the other and "
        "alternated. **intake**: intake alone with its broker on SQLite (auth, validation, "
        "matching, store, idempotency, outbox; the relay publishing). **peer** "
        "(`tests/bench/peer_app.py`): FastAPI with an HS256 JWT check, the same "
        "`ReferralSubmission` validation, and a `Referral` aggregate saved through an "
        "`eventsourcing` Application on SQLite (its notification log stands for the outbox; "
        "no matching, no idempotency record, nothing published). **floor**: the body "
        "validated only. CPU per request is the server process's alone (intake's "
        "includes its relay thread, not the broker).",
        "",
        header + " |",
        "|---|" + "---:|" * (3 * len(columns)),
        row("Requests/s", lambda r: f"{r.rps:,.0f}"),
        row("Latency p50", lambda r: _ms(r.p50_ms)),
        row("Latency p99", lambda r: _ms(r.p99_ms)),
        row("CPU per request", cpu),
        row("Non-2xx / socket errors", lambda r: f"{r.non2xx} / {r.socket_error_count}"),
        "",
    ]
    for n, r in columns:
        out.append(
            f"- Round {n}: intake ÷ peer **{r.ratio:.2f}** in req/s "
            f"(target >= {PEER_RATIO_TARGET}); intake ÷ floor "
            f"{r.intake.rps / r.floor.rps if r.floor.rps else math.nan:.2f}; peer ÷ floor "
            f"{r.peer.rps / r.floor.rps if r.floor.rps else math.nan:.2f}; CPU per request "
            "intake ÷ peer "
            f"{cpu_ms_per_request(r.intake, 'intake') / cpu_ms_per_request(r.peer, 'peer'):.2f}."
        )
    if p.problems:
        out += ["", "**The run is invalid:** " + "; ".join(p.problems) + "."]
    return out


def _where_the_time_goes(profiles: Sequence[Profile]) -> list[str]:
    out = [
        "",
        "## Where the time goes",
        "",
        "py-spy (`tests/bench/profile.py`) sampled each service 100 times a second while "
        "the bench loaded it: intake during its first round beside the peer, notifications "
        "during the fan-out published at once. Only samples of the thread holding the GIL "
        "count, so a share is of the CPU the process's Python code got. A function's share "
        "includes what it calls; the hub's own functions and the libraries a design choice "
        "decides (SQLAlchemy's execute, pydantic, PyJWT, OpenTelemetry, httpx) are listed.",
    ]
    for found in profiles:
        out += [
            "",
            f"**{found.service}** ({found.samples:,} samples). Threads: "
            + ", ".join(f"{name} {share:.0%}" for name, share in found.threads)
            + ".",
            "",
            "| share, with what it calls | function |",
            "|---:|---|",
            *(f"| {share:.0%} | `{name}` |" for name, share in found.functions),
            "",
            "Each sample once, for the innermost of those functions on its stack (what the "
            "time is spent doing):",
            "",
            "| share | innermost function |",
            "|---:|---|",
            *(f"| {share:.0%} | `{name}` |" for name, share in found.innermost),
        ]
    return out


def _latency_section(b: EndToEnd, settings: dict[str, object]) -> list[str]:
    values = list(b.latencies_ms.values())
    accept = [
        (s.answered_at - s.sent_at) * 1000 for s in b.run.accepted if s.answered_at is not None
    ]
    slip = [(s.sent_at - s.scheduled_at) * 1000 for s in b.run.sent]
    out = [
        "",
        "## (b) End-to-end latency, POST to caseplan's chronology",
        "",
        f"Open loop at {b.run.rate:g} referrals/s for {b.run.duration_s:g} s on a fresh hub; "
        "latency = the chronology entry's `recorded_at` minus the moment the POST was sent.",
        "",
        "| | |",
        "|---|---:|",
        f"| Referrals sent | {len(b.run.sent):,} |",
        f"| Accepted (202) | {len(b.run.accepted):,} |",
        f"| Reached the chronology | {len(values):,} |",
        f"| Missing | {len(b.missing):,} |",
        f"| End-to-end p50 | {_ms(percentile(values, 50))} |",
        f"| End-to-end p95 | {_ms(percentile(values, 95))} |",
        f"| End-to-end p99 | {_ms(percentile(values, 99))} |",
        f"| End-to-end max | {_ms(max(values) if values else math.nan)} |",
        f"| HTTP accept p50 / p99 | {_ms(percentile(accept, 50))} / "
        f"{_ms(percentile(accept, 99))} |",
        f"| Send schedule slip p99 / max | {_ms(percentile(slip, 99))} / "
        f"{_ms(max(slip) if slip else math.nan)} |",
        f"| Hub idle after the last send | {_opt_s(b.drain.idle_after_s)} |",
    ]
    if b.missing:
        out += ["", "Missing families (first 10): " + ", ".join(b.missing[:10])]
    if b.problems:
        out += ["", "**The run is incomplete:** " + "; ".join(b.problems) + "."]
    cpu = _cpu_table([("open-loop run", b.run.cpu)])
    if cpu:
        out += ["", "CPU used while sending, in cores:", ""]
        out += cpu
    return out


def _method(settings: dict[str, object]) -> list[str]:
    return [
        "",
        "## Method",
        "",
        "- Each part starts its own hub with `tests.harness.Hub`: the embedded broker "
        "(Tansu), the four services as separate `earlyhelp serve` processes (uvicorn, "
        "uvloop + httptools, one worker each), SQLite files, the `HubSettings` defaults "
        "of `make run` (JSON logs at INFO, no per-request access log).",
        "- (a) The bare app (`tests/bench/bare_app.py`) is an async FastAPI POST that reads "
        "the body and answers 202 with a small JSON body, served by uvicorn with the same "
        "loop and HTTP settings, without access log; its second endpoint, run for context, "
        "declares intake's `ReferralSubmission` as its body and answers once FastAPI has "
        "validated it. `wrk` (Debian 4.1.0) runs "
        "`tests/bench/post_json.lua`, which POSTs the distinct referrals in turn (thread k "
        "of n sends bodies k, k + n, ...; the warm-up has referrals of its own) with "
        "`Content-Type: application/json`, counts responses by status and prints "
        "wrk's latency percentiles. A warm-up of "
        f"{settings['warmup_s']} s on each target comes first, then the hub is left to "
        "drain, then the bare app, intake and the validation-only endpoint are measured one "
        "after the other while the "
        "whole hub is up. Any non-2xx from intake makes the run invalid.",
        "- Drain: intake's `outbox` table is counted in its SQLite file every 100 ms, and "
        "the hub counts as idle when every service's outbox is empty and every consumer "
        "has handled as many records of each topic it follows as the producing service "
        "stored (`earlyhelp_consumer_events_total`, lag gauges at 0).",
        "- (b) A fresh broker and hub. "
        f"{settings['warmup_referrals']} warm-up referrals join the consumer groups; then "
        "asyncio + httpx schedules each POST of a distinct referral at a fixed time "
        "(open loop: a send never waits for an earlier response) and records the "
        "wall-clock send time. After the hub is idle, every family's chronology is read "
        "from caseplan's API. Percentiles are nearest-rank.",
    ]


def _notes(facts: dict[str, str], a: Throughput | None, b: EndToEnd | None) -> list[str]:
    out = [
        "",
        "## Notes",
        "",
        f"- CPU context: this machine has {facts['nproc']} cores, and during (a) `wrk`, "
        "the broker, the four services and the bare app all share them; the load "
        "generator alone takes a sizeable share (see the CPU tables). A figure here is "
        "what one intake worker gets on a shared 2-core box, not a per-core capacity.",
    ]
    if a is not None and a.intake.cpu is not None:
        out.append(f"- During the intake run: {a.intake.cpu.describe()}.")
    if a is not None and a.bare.cpu is not None:
        out.append(f"- During the bare run: {a.bare.cpu.describe()}.")
    if b is not None and b.run.cpu is not None:
        out.append(f"- During (b): {b.run.cpu.describe()}.")
    out.append(
        f"- Load average when the bench started: {facts['load_average']}; anything else "
        "running on the machine shows up as 'everything else' above and lowers the figures."
    )
    return out


# --- (c) fan-out (tests/bench/fanout.py) -------------------------------------------------


def _fanout_rows(runs: Sequence[FanOut]) -> list[tuple[str, str, str, bool | None]]:
    """Throughput against the floor from the run published at once; latency from the
    run at a steady rate."""
    rows: list[tuple[str, str, str, bool | None]] = []
    burst = next((c for c in runs if not c.rate), None)
    steady = next((c for c in runs if c.rate), None)
    light = [c for c in runs if c.rate and c is not steady]
    if burst is not None:
        ratio = (
            burst.deliveries_per_cpu_s / burst.floor_posts_per_cpu_s
            if burst.floor_posts_per_cpu_s
            else math.nan
        )
        valid = not burst.problems
        rows.append(
            (
                f"(c) fan-out (issue 19), {burst.events:,} events at once to "
                f"{burst.subscribers} subscribers: deliveries per notifications CPU-second "
                "÷ signed-POST floor's",
                f">= {FANOUT_FLOOR_RATIO_TARGET}",
                f"{burst.deliveries_per_cpu_s:,.0f} ÷ {burst.floor_posts_per_cpu_s:,.0f} = "
                f"{ratio:.2f}" + ("" if valid else " (run invalid)"),
                ratio >= FANOUT_FLOOR_RATIO_TARGET if valid and not math.isnan(ratio) else False,
            )
        )
    if steady is not None:
        p99 = percentile(steady.latencies_ms, 99)
        valid = not steady.problems
        rows.append(
            (
                f"(c) fan-out (issue 19) at a steady {steady.rate:g} events/s to "
                f"{steady.subscribers} subscribers: p99 event to delivery",
                f"< {FANOUT_P99_TARGET_MS:.0f} ms",
                _ms(p99) + ("" if valid else " (run invalid)"),
                p99 < FANOUT_P99_TARGET_MS if valid and not math.isnan(p99) else False,
            )
        )
    for c in light:
        rows.append(
            (
                f"(c) context: at {c.rate:g} events/s to {c.subscribers} subscribers, a rate "
                "this machine keeps up with: p99 event to delivery",
                "none (shows that no event waits a fixed time)",
                _ms(percentile(c.latencies_ms, 99)) + ("" if not c.problems else " (run invalid)"),
                None,
            )
        )
    return rows


def _fanout_section(runs: Sequence[FanOut]) -> list[str]:
    def row(name: str, cell) -> str:
        return f"| {name} | " + " | ".join(cell(c) for c in runs) + " |"

    def sent(c: FanOut) -> str:
        return f"{c.events:,} at {c.rate:g} events/s" if c.rate else f"{c.events:,} at once"

    def ratio(c: FanOut) -> str:
        if not c.floor_posts_per_cpu_s:
            return "n/a"
        return f"{c.deliveries_per_cpu_s / c.floor_posts_per_cpu_s:.2f}"

    out = [
        "",
        "## (c) Webhook fan-out",
        "",
        "Events (families of four: referral, triage, allocation, assessment) published on the "
        "services' topics as their relays would, each naming the family's event it follows "
        "(`follows`), each to the webhook subscriptions of the referring school; the "
        "notifications service (`earlyhelp serve`, SQLite, `make run` defaults) signs and "
        "POSTs each to a webhook receiver process listening on one port per subscriber "
        "(`tests/webhook_receiver.py`: verifies every signature, records every request "
        "before answering 204). Latency = when the receiver answered minus the event's "
        "`time` (stamped as it was published). No event waits a fixed time: one waits only "
        "while the event it follows has not been consumed, at most "
        f"{runs[0].ordering_max_wait_ms:,} ms (`EARLYHELP_NOTIFICATIONS_ORDERING_MAX_WAIT_MS`). "
        "The floor: a bare loop in the bench process signing the same bodies (the service's "
        "own Standard Webhooks signing) and POSTing them with one httpx client to the same "
        "receiver, measured after each run; its CPU is the loop's, the service's is the "
        "notifications process's (the broker's is in the CPU table).",
        "",
        "| | " + " | ".join(f"run {n + 1}" for n in range(len(runs))) + " |",
        "|---|" + "---:|" * len(runs),
        row("Events published", sent),
        row("Subscribers", lambda c: str(c.subscribers)),
        row("Deliveries expected (events times subscribers)", lambda c: f"{c.expected:,}"),
        row("Acknowledged", lambda c: f"{c.delivered:,}"),
        row(
            "Missing / acknowledged twice / out of family order",
            lambda c: f"{c.missing:,} / {c.duplicates:,} / {c.out_of_order:,}",
        ),
        row("Refused attempts (retried)", lambda c: f"{c.refused:,}"),
        row("Publishing took", lambda c: f"{c.publish_s:.2f} s"),
        row("First event to last delivery", lambda c: f"{c.wall_s:.1f} s"),
        row("Deliveries per second", lambda c: f"{c.deliveries_per_s:,.0f}"),
        row("Notifications CPU", lambda c: f"{c.notifications_cpu_s:.1f} s"),
        row(
            "**Deliveries per notifications CPU-second**",
            lambda c: f"**{c.deliveries_per_cpu_s:,.0f}**",
        ),
        row(
            "Floor: signed httpx POSTs per CPU-second", lambda c: f"{c.floor_posts_per_cpu_s:,.0f}"
        ),
        row("**Ratio to the floor**", lambda c: f"**{ratio(c)}**"),
        row("Event to delivery p50", lambda c: _ms(percentile(c.latencies_ms, 50))),
        row("Event to delivery p95", lambda c: _ms(percentile(c.latencies_ms, 95))),
        row("**Event to delivery p99**", lambda c: f"**{_ms(percentile(c.latencies_ms, 99))}**"),
        row(
            "Event to delivery max",
            lambda c: _ms(max(c.latencies_ms) if c.latencies_ms else math.nan),
        ),
    ]
    for number, c in enumerate(runs, start=1):
        if c.problems:
            out += ["", f"**Run {number} is invalid:** " + "; ".join(c.problems) + "."]
    cpu = _cpu_table([(f"run {n + 1}", c.cpu) for n, c in enumerate(runs)])
    if cpu:
        out += ["", "CPU used while the events were published and delivered, in cores:", ""]
        out += cpu
    return out


# --- (d) the token endpoint under a burst (tests/bench/token_burst.py) -------------------


def _token_burst_row(d: TokenBurst) -> tuple[str, str, str, bool | None]:
    bad = [b for b in d.bursts if not b.control]
    worst = max((max(b.probe_ms) for b in bad if b.probe_ms), default=math.nan)
    valid = not d.problems
    return (
        f"(d) /healthz during {d.bursts[0].requests} bad token requests at once (issue 15): "
        "worst probe",
        f"< {HEALTHZ_DURING_BURST_TARGET_MS:.0f} ms",
        _ms(worst) + ("" if valid else " (run invalid)"),
        (worst < HEALTHZ_DURING_BURST_TARGET_MS) if valid and not math.isnan(worst) else False,
    )


def _token_burst_section(d: TokenBurst, facts: dict[str, str]) -> list[str]:
    bursts = d.bursts

    def row(name: str, cell) -> str:
        return f"| {name} | " + " | ".join(cell(b) for b in bursts) + " |"

    def by_kind(kind: str):
        return lambda b: (
            ", ".join(f"{count} x {status}" for status, count in sorted(b.statuses[kind].items()))
            or "-"
        )

    out = [
        "",
        f"## (d) Token endpoint under a burst of {bursts[0].requests} bad requests",
        "",
        "Intake alone (`earlyhelp serve intake`, SQLite, `make run` defaults: "
        + ", ".join(f"{name} {value}" for name, value in d.settings.items())
        + "). A prober process asks `/healthz` every "
        "10 ms on a new connection each time while all the bad requests are sent at once "
        "on connections of their own: a third wrong secrets for a real client, a third "
        "unknown client ids, a third forged bearer tokens on `GET /v1/referrals/{id}` "
        "(half signed by a stranger's Ed25519 key under the issuer's `kid`, half not JWTs). "
        "Once from one address, once from as many loopback addresses as requests. "
        f"Run {facts['date']}, load average at start {facts['load_average']}; the machine "
        "was shared with other work (see 'everything else' below).",
        "",
        "| | " + " | ".join(b.spread for b in bursts) + " |",
        "|---|" + "---:|" * len(bursts),
        row("Burst took (first sent to last answered)", lambda b: f"{b.elapsed_s:.2f} s"),
        row("Wrong secret: answers", by_kind("wrong secret")),
        row("Unknown client: answers", by_kind("unknown client")),
        row("Forged bearer: answers", by_kind("forged bearer")),
        row("Secrets checked (got past the limits)", lambda b: f"{b.checked:g}"),
        row("429 (rate limited)", lambda b: f"{b.count(429)}"),
        row("503 (secret checks busy)", lambda b: f"{b.count(503)}"),
        row("/healthz probes during the burst", lambda b: f"{len(b.probe_ms)}"),
        row("/healthz p50", lambda b: _ms(percentile(b.probe_ms, 50))),
        row("/healthz p99", lambda b: _ms(percentile(b.probe_ms, 99))),
        row(
            "**/healthz max**",
            lambda b: f"**{_ms(max(b.probe_ms) if b.probe_ms else math.nan)}**",
        ),
        row(
            "Probes over 100 ms (s into the burst: ms, of which connecting)",
            lambda b: (
                ", ".join(f"{at:.2f}: {ms:.0f} ({c:.1f})" for at, ms, c in b.slow_probes) or "none"
            ),
        ),
        "",
        f"`/healthz` with no burst: p50 {_ms(percentile(d.idle_probe_ms, 50))}, max "
        f"{_ms(max(d.idle_probe_ms) if d.idle_probe_ms else math.nan)} "
        f"({len(d.idle_probe_ms)} probes over 2 s).",
        "",
        "How to read it: the control column is the floor. Requests arriving together are "
        "handled by intake's one event loop one after another, each to its end or its first "
        "wait (a `/healthz` takes about 0.6 ms of CPU, a refused token request or forged "
        "token 1.1 to 1.5 ms, through the middleware stack), so a probe arriving just "
        "behind 200 of them waits for all of them, longer when other work holds the cores. "
        "What the token endpoint adds is the secret checks after that first moment: at most "
        "one thread of them, the rest refused at once (429 by the limits, 503 when the "
        "queue is full). Before and after figures of the fix: docs/security.md.",
    ]
    if d.problems:
        out += ["", "**The run is invalid:** " + "; ".join(d.problems) + "."]
    cpu = _cpu_table([(b.spread, b.cpu) for b in bursts])
    if cpu:
        out += ["", "CPU used during each burst, in cores:", ""]
        out += cpu
    return out


def splice(page: str, fresh: str, part: str) -> str:
    """`page` with part `part`'s section and target row taken from `fresh` (a report of
    that part alone), the other parts' figures left as they were."""
    heading = f"## ({part})"
    lines, new = page.splitlines(), fresh.splitlines()

    def section(of: list[str]) -> tuple[int, int] | None:
        starts = [i for i, line in enumerate(of) if line.startswith(heading)]
        if not starts:
            return None
        end = next((i for i in range(starts[0] + 1, len(of)) if of[i].startswith("## ")), len(of))
        return starts[0], end

    found_new = section(new)
    if found_new is None:
        return page
    new_section = new[found_new[0] : found_new[1]]
    found = section(lines)
    if found is not None:
        lines[found[0] : found[1]] = new_section
    else:
        method = next((i for i, line in enumerate(lines) if line == "## Method"), len(lines))
        lines[method:method] = new_section
    row_prefix = f"| ({part})"
    new_rows = [line for line in new if line.startswith(row_prefix)]
    kept = [i for i, line in enumerate(lines) if line.startswith(row_prefix)]
    if kept:
        lines[kept[0] : kept[-1] + 1] = new_rows
    else:
        table = next(i for i, line in enumerate(lines) if line.startswith("| Target |"))
        end = next((i for i in range(table, len(lines)) if not lines[i].startswith("|")), None)
        end = len(lines) if end is None else end
        lines[end:end] = new_rows
    return "\n".join(lines) + "\n"
