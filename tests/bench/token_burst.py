"""(d) The token endpoint under a burst of bad requests, and /healthz meanwhile.

A fresh broker and intake alone (`earlyhelp serve intake`, SQLite, the defaults of
`make run`). A prober process of its own asks intake's /healthz every 10 ms on a new
connection each time (as a kubelet does), while the bench fires bad requests at once,
a third of each kind:

- a wrong secret for a real client (one demo client per burst);
- a client id that does not exist;
- a forged bearer token on a protected GET (`GET /v1/referrals/{id}`): half signed with
  a stranger's Ed25519 key under the issuer's own `kid` (so the signature is checked),
  half not a JWT at all; each one different, as an attacker's would be.

The burst runs twice: from one address (127.0.0.1, where the per-address limit
answers most of it), and spread over as many loopback addresses as requests (one
each, as a botnet's would be, where no per-address limit applies). A third, control
burst sends as many `GET /healthz` at once: the cheapest request there is, so the
wait it causes is what any burst of that size costs, token endpoint or not. Nothing is
asserted; figures are printed and written to docs/benchmarks.md. A probe that is not
answered 200, or a bad request answered anything but 401/429/503, makes the run invalid.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx

from hub.broker import EmbeddedBroker, free_port
from hub.testing import TEST_PUBLIC_KEYS
from hub.tokens import SigningKeys, new_signing_key
from tests.bench.load import BenchError
from tests.bench.measure import PRODUCTION_ENV, log
from tests.bench.system import CpuUsage, cpu_between, sample_cpu
from tests.harness import PARTNER, STAFF, Hub

PROBE_INTERVAL_S = 0.01
SLOW_PROBE_MS = 100.0
BAD_STATUSES = frozenset({401, 429, 503})
KINDS = ("wrong secret", "unknown client", "forged bearer")
CONTROL = "healthz"
CONTROL_LABEL = "control: only GET /healthz, one address"


@dataclass
class Burst:
    """One burst and the /healthz probes that ran while it lasted."""

    spread: str
    requests: int
    elapsed_s: float
    statuses: dict[str, Counter[int]]
    probe_ms: list[float]
    probe_failures: int
    # Secrets checked (answered 401 invalid_client or issued): what got past the limits.
    checked: float
    # Probes over SLOW_PROBE_MS: (seconds after the burst began, milliseconds, of which
    # connecting), to tell a stalled event loop from a connection left waiting.
    slow_probes: list[tuple[float, float, float]]
    cpu: CpuUsage | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def control(self) -> bool:
        return sum(self.statuses.get(CONTROL, Counter()).values()) > 0

    def count(self, status: int) -> int:
        return sum(by_status[status] for by_status in self.statuses.values())


@dataclass
class TokenBurst:
    idle_probe_ms: list[float]
    bursts: list[Burst]
    settings: dict[str, str]

    @property
    def problems(self) -> list[str]:
        return [f"({b.spread}) {p}" for b in self.bursts for p in b.problems]


# --- the prober: a process of its own, so that the burst's client does not delay it ----


def _probe(url: str, probing, stop, results) -> None:  # runs in the prober process
    host, port = url.removeprefix("http://").split(":")
    samples: list[tuple[int, float, float, float]] = []
    while not stop.is_set():
        sent_at, started = time.time(), time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.connect()
            connected = time.perf_counter()
            connection.request("GET", "/healthz")
            status = connection.getresponse().status
        except OSError:
            status, connected = 0, time.perf_counter()
        finally:
            connection.close()
        samples.append(
            (status, sent_at, (time.perf_counter() - started) * 1000, (connected - started) * 1000)
        )
        probing.set()
        time.sleep(PROBE_INTERVAL_S)
    results.put(samples)


class Prober:
    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._probing = context.Event()
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(
            target=_probe, args=(url, self._probing, self._stop, self._results)
        )

    def __enter__(self) -> Prober:
        self._process.start()
        if not self._probing.wait(60):
            raise BenchError("the /healthz prober did not start")
        return self

    def samples(self) -> list[tuple[int, float, float, float]]:
        """Stops probing; the (status, wall-clock time sent, milliseconds, of which
        connecting) of every probe."""
        self._stop.set()
        samples = self._results.get(timeout=60)
        self._process.join(30)
        return samples

    def __exit__(self, *_exc: object) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


# --- the burst ----------------------------------------------------------------------------


def _forged_tokens(count: int, issuer_kid: str) -> list[str]:
    stranger = SigningKeys({"keys": [{**new_signing_key(), "kid": issuer_kid}]})
    now = int(time.time())
    tokens = []
    for i in range(count):
        if i % 2:
            tokens.append(f"eyJhbGciOiJFZERTQSJ9.{uuid.uuid4().hex}.{uuid.uuid4().hex}")
            continue
        claims = {
            "iss": "earlyhelp",
            "aud": "earlyhelp",
            "sub": PARTNER,
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            "scope": "referrals:read referrals:write",
            "kind": "partner",
        }
        tokens.append(stranger.sign(claims))
    return tokens


def _requests(count: int, issuer_kid: str, victim: str) -> list[tuple[str, bytes]]:
    """(kind, raw HTTP/1.1 request) for `count` bad requests, the kinds interleaved."""
    forged = iter(_forged_tokens(count, issuer_kid))
    out = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        if kind == "forged bearer":
            head = (
                f"GET /v1/referrals/{uuid.uuid4()} HTTP/1.1\r\nHost: intake\r\n"
                f"Authorization: Bearer {next(forged)}\r\nConnection: close\r\n\r\n"
            )
            out.append((kind, head.encode()))
            continue
        client_id = victim if kind == "wrong secret" else f"no-such-client-{uuid.uuid4().hex[:8]}"
        body = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": f"guess-{i}",
            }
        ).encode()
        head = (
            "POST /v1/oauth/token HTTP/1.1\r\nHost: intake\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        out.append((kind, head.encode() + body))
    return out


async def _send(host: str, port: int, request: bytes, local_address: str | None) -> int:
    """One request on a connection of its own; the response's status. A bare client
    rather than httpx, so that the load generator takes as little of the CPU the service
    needs as it can."""
    local = (local_address, 0) if local_address else None
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    try:
        writer.write(request)
        await writer.drain()
        response = await reader.read()  # Connection: close: the server ends it
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) > 1 else 0
    if (
        status in BAD_STATUSES
        and b"application/problem+json" not in response
        and (b'"error"' not in response)
    ):
        return -status  # a refusal without a problem+json or RFC 6749 body
    return status


async def _fire(base_url: str, requests: list[tuple[str, bytes]], spread: bool) -> list[int]:
    """Every request at once; with `spread`, each from a loopback address of its own."""
    host, port = base_url.removeprefix("http://").split(":")
    return await asyncio.gather(
        *(
            _send(host, int(port), request, f"127.1.{i // 250}.{i % 250 + 1}" if spread else None)
            for i, (_kind, request) in enumerate(requests)
        )
    )


def _metric_sum(base_url: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(base_url + "/metrics", timeout=30).text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.split()[-1])
    return total


def _control_requests(count: int) -> list[tuple[str, bytes]]:
    request = b"GET /healthz HTTP/1.1\r\nHost: intake\r\nConnection: close\r\n\r\n"
    return [(CONTROL, request)] * count


def _burst(base_url: str, plan: list[tuple[str, bytes]], label: str, *, spread: bool) -> Burst:
    checked_before = _metric_sum(
        base_url, "earlyhelp_token_requests_total", outcome="invalid_client"
    ) + _metric_sum(base_url, "earlyhelp_token_requests_total", outcome="issued")
    with Prober(base_url) as prober:
        cpu_before = sample_cpu()
        started_at = time.time()
        statuses = asyncio.run(_fire(base_url, plan, spread))
        ended_at = time.time()
        cpu_after = sample_cpu()
        # Probes sent while the burst lasted, the ones it delays.
        samples = [
            (status, sent_at - started_at, ms, connect_ms)
            for status, sent_at, ms, connect_ms in prober.samples()
            if started_at <= sent_at <= ended_at
        ]
    checked = (
        _metric_sum(base_url, "earlyhelp_token_requests_total", outcome="invalid_client")
        + _metric_sum(base_url, "earlyhelp_token_requests_total", outcome="issued")
        - checked_before
    )
    by_kind: dict[str, Counter[int]] = {kind: Counter() for kind in (*KINDS, CONTROL)}
    for (kind, _args), status in zip(plan, statuses, strict=True):
        by_kind[kind][status] += 1
    burst = Burst(
        spread=label,
        requests=len(plan),
        elapsed_s=ended_at - started_at,
        statuses=by_kind,
        probe_ms=[ms for status, _at, ms, _c in samples if status == 200],
        probe_failures=sum(1 for status, *_rest in samples if status != 200),
        slow_probes=[sample[1:] for sample in samples if sample[2] > SLOW_PROBE_MS],
        checked=checked,
        cpu=cpu_between(cpu_before, cpu_after, reaped_label=None),
    )
    unexpected = {
        status: count
        for kind, by_status in by_kind.items()
        for status, count in by_status.items()
        if status not in (BAD_STATUSES if kind != CONTROL else {200})
    }
    if unexpected:
        burst.problems.append(f"bad requests answered {unexpected}")
    if burst.probe_failures:
        burst.problems.append(f"{burst.probe_failures} /healthz probes not answered 200")
    if not burst.probe_ms:
        burst.problems.append("no /healthz probe answered")
    return burst


def _idle_probes(base_url: str, seconds: float) -> list[float]:
    with Prober(base_url) as prober:
        time.sleep(seconds)
        return [ms for status, _at, ms, _c in prober.samples() if status == 200]


def measure_token_burst(workdir: Path, *, requests: int) -> TokenBurst:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_path=workdir / "broker.log")
    broker.start()
    try:
        with Hub(
            workdir, broker.bootstrap_servers, services=("intake",), extra_env=PRODUCTION_ENV
        ) as hub:
            base_url = hub.url("intake")
            settings = hub.settings("intake")
            issuer_kid = json.loads(TEST_PUBLIC_KEYS)["keys"][0]["kid"]
            # One good exchange first: the endpoint, scrypt and the signer are warm.
            good = httpx.post(
                base_url + "/v1/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": "brent-health-visiting",
                    "client_secret": "demo-health-secret",
                },
                timeout=30,
            )
            if good.status_code != 200:
                raise BenchError(f"intake refused a good client: {good.status_code} {good.text}")
            log("(d) idle /healthz for 2 s")
            idle = _idle_probes(base_url, 2.0)
            bursts = []
            # Each burst guesses the secret of a client of its own, so that the second
            # does not start where the first left that client's limit.
            for spread, victim in ((False, PARTNER), (True, STAFF)):
                label = f"from {requests} addresses" if spread else "from one address"
                log(f"(d) {requests} bad requests at once, {label}")
                plan = _requests(requests, issuer_kid, victim)
                bursts.append(_burst(base_url, plan, label, spread=spread))
            # For comparison: as many of the cheapest requests there are, at once.
            log(f"(d) control: {requests} GET /healthz at once")
            bursts.append(
                _burst(base_url, _control_requests(requests), CONTROL_LABEL, spread=False)
            )
            return TokenBurst(
                idle_probe_ms=idle,
                bursts=bursts,
                settings={
                    "per address a minute": str(settings.token_attempts_per_address_per_minute),
                    "failures per client a minute": str(
                        settings.token_failures_per_client_per_minute
                    ),
                    "secret-check threads": str(settings.token_secret_check_threads),
                    # Absent before the queue existed: the bench also measures that code.
                    "secret-check queue": str(
                        getattr(settings, "token_secret_check_queue", "unbounded")
                    ),
                },
            )
    finally:
        broker.stop()
