"""Load generators: `wrk` for closed-loop throughput, asyncio + httpx for a fixed arrival rate."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bench.system import CpuUsage, cpu_between, sample_cpu

LUA_SCRIPT = Path(__file__).with_name("post_json.lua")
_RESULT_MARK = "BENCH_RESULT "


class BenchError(RuntimeError):
    """The bench could not produce a valid figure."""


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    return path


@dataclass
class WrkResult:
    target: str
    threads: int
    connections: int
    duration_s: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    non2xx: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    cpu: CpuUsage | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def socket_error_count(self) -> int:
        return sum(v for k, v in self.socket_errors.items() if k != "status")


def run_wrk(
    url: str,
    body_file: Path,
    *,
    target: str,
    threads: int = 2,
    connections: int = 32,
    duration_s: int = 10,
    timeout_s: int = 10,
    authorization: str = "",
) -> WrkResult:
    """One wrk run POSTing the bodies of `body_file` (one per line) to `url`, with the CPU
    every bench process used."""
    command = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body_file),
        "BENCH_THREADS": str(threads),
        "BENCH_AUTHORIZATION": authorization,
    }
    before = sample_cpu()
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    after = sample_cpu()
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith(_RESULT_MARK)), None)
    if completed.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed ({completed.returncode}) against {url}:\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )
    data = json.loads(line[len(_RESULT_MARK) :])
    return WrkResult(
        target=target,
        threads=threads,
        connections=connections,
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        non2xx=data["non2xx"],
        statuses=data["statuses"],
        socket_errors=data["errors"],
        cpu=cpu_between(before, after, reaped_label="wrk"),
    )


# --- Open loop ------------------------------------------------------------------------


@dataclass
class Sent:
    index: int
    scheduled_at: float  # wall clock (time.time()) the send was due
    sent_at: float  # wall clock just before the request went out
    status: int | None = None
    answered_at: float | None = None
    referral_id: str | None = None
    error: str | None = None


@dataclass
class OpenLoopRun:
    rate: float
    duration_s: float
    sent: list[Sent] = field(default_factory=list)
    cpu: CpuUsage | None = None

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 202 and s.referral_id]

    @property
    def failed(self) -> list[Sent]:
        return [s for s in self.sent if not (s.status == 202 and s.referral_id)]


async def _open_loop(
    url: str, bodies: list[bytes], rate: float, duration_s: float, auth: dict[str, str]
) -> OpenLoopRun:
    run = OpenLoopRun(rate=rate, duration_s=duration_s)
    count = round(rate * duration_s)
    headers = {"content-type": "application/json", **auth}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def send(item: Sent) -> None:
            try:
                item.sent_at = time.time()
                body = bodies[item.index % len(bodies)]
                response = await client.post(url, content=body, headers=headers)
                item.answered_at = time.time()
                item.status = response.status_code
                if response.status_code == 202:
                    item.referral_id = response.json()["referral_id"]
                else:
                    item.error = response.text[:300]
            except httpx.HTTPError as exc:
                item.error = f"{type(exc).__name__}: {exc}"

        loop = asyncio.get_running_loop()
        start_mono = loop.time() + 0.2
        start_wall = time.time() + (start_mono - loop.time())
        tasks = []
        for index in range(count):
            due = start_mono + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            item = Sent(index=index, scheduled_at=start_wall + index / rate, sent_at=0.0)
            run.sent.append(item)
            # Fire and go on: the next send never waits for this response.
            tasks.append(asyncio.create_task(send(item)))
        await asyncio.gather(*tasks)
    return run


def open_loop(
    url: str, bodies: list[bytes], *, rate: float, duration_s: float, auth: dict[str, str]
) -> OpenLoopRun:
    """POST `bodies` in turn at a fixed arrival rate, whatever the responses do (open loop)."""
    before = sample_cpu()
    run = asyncio.run(_open_loop(url, bodies, rate, duration_s, auth))
    run.cpu = cpu_between(before, sample_cpu(), reaped_label=None)
    return run


async def _fetch_all(
    urls: dict[str, str], concurrency: int, auth: dict[str, str]
) -> dict[str, tuple[int, dict]]:
    results: dict[str, tuple[int, dict]] = {}
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30, headers=auth) as client:

        async def fetch(key: str, url: str) -> None:
            async with gate:
                try:
                    response = await client.get(url)
                    body = response.json() if response.content else {}
                    results[key] = (response.status_code, body)
                except (httpx.HTTPError, ValueError) as exc:
                    results[key] = (0, {"error": f"{type(exc).__name__}: {exc}"})

        await asyncio.gather(*(fetch(k, u) for k, u in urls.items()))
    return results


def fetch_all(
    urls: dict[str, str], *, auth: dict[str, str], concurrency: int = 16
) -> dict[str, tuple[int, dict]]:
    """GET every url; {key: (status, json body)}."""
    return asyncio.run(_fetch_all(urls, concurrency, auth))
