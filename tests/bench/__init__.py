"""`make bench`: throughput and latency figures for the hub, written to docs/benchmarks.md.

Run with `python -m tests.bench` (see `--help`). Two measurements, each on a whole
hub (embedded broker, four services, SQLite) started by `tests.harness.Hub`:

(a) intake's accept throughput and latency under `wrk` at 32 connections, side by
    side with a bare FastAPI endpoint served the same way (tests/bench/bare_app.py),
    reported as a ratio; then the outbox backlog left and how long the hub takes
    to drain it.
(b) end-to-end latency from the POST to caseplan's chronology at a fixed arrival
    rate (open loop), on a fresh hub.

Figures are printed and written down; nothing here asserts a timing.
"""
