"""`python -m tests.bench`: measure, print, and write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from tests.bench.fanout import FanOut, measure_fanout
from tests.bench.load import BenchError, require_wrk
from tests.bench.measure import (
    REPO_ROOT,
    EndToEnd,
    PeerComparison,
    Throughput,
    log,
    measure_against_peer,
    measure_end_to_end,
    measure_throughput,
)
from tests.bench.report import render, splice, targets
from tests.bench.system import machine_facts
from tests.bench.token_burst import TokenBurst, measure_token_burst
from tests.referral_data import distinct_referrals


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (-t)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (-c)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up")
    parser.add_argument("--rate", type=float, default=100.0, help="(b) referrals per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="(b) seconds of sending")
    parser.add_argument(
        "--warmup-referrals", type=int, default=40, help="(b) referrals sent before measuring"
    )
    parser.add_argument(
        "--referrals",
        type=int,
        default=40_000,
        help="(a) distinct referrals wrk cycles through (more than a run sends)",
    )
    parser.add_argument(
        "--fanout-events", type=int, default=1000, help="(c) events fanned out (families of 4)"
    )
    parser.add_argument(
        "--fanout-subscribers", type=int, default=20, help="(c) webhook subscribers, one port each"
    )
    parser.add_argument(
        "--fanout-steady-rate",
        type=float,
        default=50.0,
        help="(c) events per second of the latency run (0: no latency run)",
    )
    parser.add_argument(
        "--fanout-steady-seconds", type=float, default=20.0, help="(c) seconds of the latency run"
    )
    parser.add_argument(
        "--fanout-light-rate",
        type=float,
        default=5.0,
        help="(c) events per second of a latency run this machine can keep up with (0: none)",
    )
    parser.add_argument(
        "--burst-requests", type=int, default=200, help="(d) bad token requests sent at once"
    )
    parser.add_argument(
        "--peer-rounds", type=int, default=2, help="(a-peer) rounds of intake, peer and floor"
    )
    parser.add_argument(
        "--only",
        choices=("a", "a-peer", "b", "c", "d"),
        help="run one part only; its section replaces that part's in the existing report",
    )
    parser.add_argument(
        "--no-context-run",
        action="store_true",
        help="(a) skip the context run of the bare app validating the body only",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO_ROOT / "docs" / "benchmarks.md",
        help="where to write the report (default docs/benchmarks.md)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (databases, logs)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.only in (None, "a", "a-peer"):
        require_wrk()
    facts = machine_facts()
    log(
        f"{facts['nproc']} CPUs ({facts['cpu']}), {facts['python']}, "
        f"load average {facts['load_average']}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="earlyhelp-bench-"))
    # Each referral is about children no other one mentions; warm-ups get their own, so
    # that no measured referral is matched to a family a warm-up created.
    open_loop_count = args.warmup_referrals + round(args.rate * args.seconds)
    peer_count = args.peer_rounds * args.referrals // 2
    bodies = distinct_referrals(2 * args.referrals + open_loop_count + peer_count)
    warmup_file, body_file = workdir / "warmup.jsonl", workdir / "referrals.jsonl"
    warmup_file.write_bytes(b"\n".join(bodies[: args.referrals]))
    body_file.write_bytes(b"\n".join(bodies[args.referrals : 2 * args.referrals]))
    peer_bodies = bodies[2 * args.referrals + open_loop_count :]
    peer_files = [workdir / f"peer-round-{n + 1}.jsonl" for n in range(args.peer_rounds)]
    for number, path in enumerate(peer_files):
        share = len(peer_bodies) // len(peer_files)
        path.write_bytes(b"\n".join(peer_bodies[number * share : (number + 1) * share]))
    settings: dict[str, object] = {
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "body_bytes": round(sum(map(len, bodies)) / len(bodies)),
        "referrals": args.referrals,
        "warmup_referrals": args.warmup_referrals,
    }
    throughput: Throughput | None = None
    against_peer: PeerComparison | None = None
    end_to_end: EndToEnd | None = None
    fanout: list[FanOut] = []
    token_burst: TokenBurst | None = None
    try:
        if args.only in (None, "a"):
            throughput = measure_throughput(
                workdir / "a",
                body_file,
                warmup_file,
                threads=args.threads,
                connections=args.connections,
                duration_s=args.duration,
                warmup_s=args.warmup,
                with_validation_only=not args.no_context_run,
            )
        if args.only in (None, "a-peer") and args.peer_rounds:
            against_peer = measure_against_peer(
                workdir / "a-peer",
                peer_files,
                warmup_file,
                threads=args.threads,
                connections=args.connections,
                duration_s=args.duration,
                warmup_s=args.warmup,
            )
        if args.only in (None, "b"):
            end_to_end = measure_end_to_end(
                workdir / "b",
                bodies[2 * args.referrals : 2 * args.referrals + open_loop_count],
                rate=args.rate,
                duration_s=args.seconds,
                warmup=args.warmup_referrals,
            )
        if args.only in (None, "c"):
            # Throughput: everything published at once, the service as busy as it gets.
            fanout.append(
                measure_fanout(
                    workdir / "c-burst",
                    events=args.fanout_events,
                    subscribers=args.fanout_subscribers,
                    profile=True,
                )
            )
            # Latency: a steady arrival rate, as events come in a working day; the target's
            # rate, and one light enough for this machine to keep up with.
            for rate in (args.fanout_steady_rate, args.fanout_light_rate):
                if not rate:
                    continue
                fanout.append(
                    measure_fanout(
                        workdir / f"c-steady-{rate:g}",
                        events=round(rate * args.fanout_steady_seconds),
                        subscribers=args.fanout_subscribers,
                        rate=rate,
                    )
                )
        if args.only in (None, "d"):
            token_burst = measure_token_burst(workdir / "d", requests=args.burst_requests)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        print(f"work directory kept: {workdir}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            log(f"work directory kept: {workdir}")

    report = render(
        facts,
        throughput,
        end_to_end,
        settings=settings,
        fanout=fanout,
        token_burst=token_burst,
        peer=against_peer,
    )
    print()
    print(report)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        if args.only and args.output.exists():
            report = splice(args.output.read_text(), report, args.only)
        args.output.write_text(report)
        log(f"written to {args.output}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    problems = [
        *(throughput.problems if throughput else []),
        *(against_peer.problems if against_peer else []),
        *(end_to_end.problems if end_to_end else []),
        *(problem for run in fanout for problem in run.problems),
        *(token_burst.problems if token_burst else []),
    ]
    for problem in problems:
        print(f"[bench] INVALID: {problem}", file=sys.stderr)
    # A missed target is a finding, not a failure; an invalid run is a failure.
    for name, _wanted, measured, met in targets(
        throughput, end_to_end, fanout, token_burst, against_peer
    ):
        verdict = "no target" if met is None else "met" if met else "NOT met"
        log(f"{name}: {measured} -> {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
