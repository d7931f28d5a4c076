"""docs/benchmarks.md: the figures of one run, with the machine, the method and the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tests.bench.fanout import FanOut
from tests.bench.measure import EndToEnd, Throughput
from tests.bench.system import CpuUsage
from tests.bench.token_burst import TokenBurst

RATIO_TARGET = 0.5
E2E_P99_TARGET_MS = 250.0
REFERRAL_PATH_RATIO_TARGET = 0.6  # issue 3: the full referral path at -c32
REFERRAL_PATH_P99_TARGET_MS = 100.0
HEALTHZ_DURING_BURST_TARGET_MS = 100.0  # issue 15


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
    c: FanOut | None = None,
    d: TokenBurst | None = None,
) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []
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
    if c is not None:
        rows.append(_fanout_row(c))
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
    fanout: FanOut | None = None,
    token_burst: TokenBurst | None = None,
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
    for name, wanted, measured, met in targets(a, b, fanout, token_burst):
        out.append(f"| {name} | {wanted} | {measured} | {_yes(met)} |")
    if a is not None:
        out += _throughput_section(a, settings)
    if b is not None:
        out += _latency_section(b, settings)
    if fanout is not None:
        out += _fanout_section(fanout)
    if token_burst is not None:
        out += _token_burst_section(token_burst, facts)
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


def _fanout_row(c: FanOut) -> tuple[str, str, str, bool | None]:
    p99 = percentile(c.latencies_ms, 99)
    return (
        f"(c) fan-out, {c.events:,} events to {c.subscribers} webhook subscribers: "
        "deliveries/s and p99 event to delivery",
        "none set (issue 6 asks for the figures)",
        f"{c.deliveries_per_s:,.0f}/s, {_ms(p99)}" + ("" if not c.problems else " (run invalid)"),
        None,
    )


def _fanout_section(c: FanOut) -> list[str]:
    values = c.latencies_ms
    sent = f"at {c.rate:g} events/s" if c.rate else "all at once"
    out = [
        "",
        "## (c) Webhook fan-out",
        "",
        f"{c.events:,} events ({c.events // 4:,} families: referral, triage, allocation, "
        f"assessment) published {sent} on the services' topics as their relays would, "
        f"each to {c.subscribers} webhook subscriptions of the referring school; the "
        "notifications service (`earlyhelp serve`, SQLite, `make run` defaults) signs and "
        f"POSTs each to a webhook receiver process listening on {c.subscribers} ports "
        "(`tests/webhook_receiver.py`: verifies every signature, records every request "
        "before answering 204). Latency = when the receiver answered minus the event's "
        "`time` (stamped as it was published); it includes the ordering window of "
        f"{c.ordering_window_ms:,} ms every event waits before fan-out "
        "(`EARLYHELP_NOTIFICATIONS_ORDERING_WINDOW_MS`).",
        "",
        "| | |",
        "|---|---:|",
        f"| Deliveries expected (events times subscribers) | {c.expected:,} |",
        f"| Acknowledged | {c.delivered:,} |",
        f"| Missing / acknowledged twice / out of family order | {c.missing:,} / "
        f"{c.duplicates:,} / {c.out_of_order:,} |",
        f"| Refused attempts (retried) | {c.refused:,} |",
        f"| Publishing took | {c.publish_s:.2f} s |",
        f"| First event to last delivery | {c.wall_s:.1f} s |",
        f"| **Deliveries per second** | **{c.deliveries_per_s:,.0f}** |",
        f"| Event to delivery p50 | {_ms(percentile(values, 50))} |",
        f"| Event to delivery p95 | {_ms(percentile(values, 95))} |",
        f"| **Event to delivery p99** | **{_ms(percentile(values, 99))}** |",
        f"| Event to delivery max | {_ms(max(values) if values else math.nan)} |",
    ]
    if c.problems:
        out += ["", "**The run is invalid:** " + "; ".join(c.problems) + "."]
    cpu = _cpu_table([("fan-out run", c.cpu)])
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
