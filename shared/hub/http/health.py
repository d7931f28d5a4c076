"""Liveness, readiness and Prometheus endpoints, outside /v1 and the OpenAPI schema."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future

from fastapi import APIRouter, Request
from prometheus_client import REGISTRY, CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder
from starlette.responses import JSONResponse, Response

from hub.http.problems import PROBLEM_MEDIA_TYPE, problem_type
from hub.privacy import describe_error

ReadinessCheck = Callable[[], None]
"""Returns when the dependency is usable, raises when it is not."""

DegradationCheck = Callable[[], str | None]
"""A cheap, in-memory look at a worker: why it is not keeping up, or None.

A degraded service still serves (/readyz answers 200 with status "degraded"):
taking it out of a load balancer would not bring its database back sooner.
"""

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

_log = logging.getLogger("hub.http.health")

_readiness_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = (
    weakref.WeakKeyDictionary()
)
_readiness_lock = threading.Lock()


def readiness_gauge(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """`earlyhelp_readiness_check_ok` of `registry`, created on first use.

    A registry refuses a second family of the same name, and several apps
    (tests, or services sharing a process) may use one registry.
    """
    with _readiness_lock:
        gauge = _readiness_by_registry.get(registry)
        if gauge is None:
            gauge = Gauge(
                "earlyhelp_readiness_check_ok",
                "1 while the readiness check passes, 0 while it fails (as of the last "
                "/readyz or scrape); the alert EarlyHelpNotReady watches it.",
                ["check"],
                registry=registry,
            )
            _readiness_by_registry[registry] = gauge
        return gauge


class _TimedCheck:
    """Runs one readiness check in its own thread, bounded by a timeout.

    A Python thread cannot be stopped, so a hung check keeps its thread. Probes
    that come while a run is still going wait on that run instead of starting
    another: a dead database costs one thread, not one per probe.
    """

    def __init__(self, name: str, check: ReadinessCheck) -> None:
        self.name = name
        self._check = check
        self._running: Future[None] | None = None
        self._lock = threading.Lock()

    async def failure(self, timeout: float) -> str | None:
        """None when the check passes, else a short reason."""
        with self._lock:
            if self._running is None or self._running.done():
                self._running = Future()
                threading.Thread(
                    target=self._run,
                    args=(self._running,),
                    name=f"readiness-{self.name}",
                    daemon=True,  # a hung check must not block the process from exiting
                ).start()
            running = self._running
        try:
            await asyncio.wait_for(_finished(running), timeout)
        except TimeoutError:
            _log.warning("Readiness check %s timed out after %gs", self.name, timeout)
            return f"timed out after {timeout:g}s"
        error = running.exception()
        if error is None:
            return None
        reason = describe_error(error)
        _log.warning("Readiness check %s failed: %s", self.name, reason)
        return reason if len(reason) <= 160 else reason[:157] + "..."

    def _run(self, result: Future[None]) -> None:
        try:
            self._check()
        except BaseException as error:  # whatever ends the thread must settle the run
            result.set_exception(error)
        else:
            result.set_result(None)


def _finished(running: Future[None]) -> asyncio.Future[None]:
    """Resolves on this loop when `running` is done, carrying none of its outcome.

    Unlike asyncio.wrap_future, abandoning it on timeout neither cancels the
    check's future nor leaves an exception that nobody retrieves.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not finished.done():
            finished.set_result(None)

    def wake(_: Future[None]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
            loop.call_soon_threadsafe(resolve)

    running.add_done_callback(wake)
    return finished


def health_router(
    readiness_checks: Mapping[str, ReadinessCheck],
    *,
    metrics_registry: CollectorRegistry = REGISTRY,
    readiness_timeout: float = 2.0,
    degradation_checks: Mapping[str, DegradationCheck] | None = None,
) -> APIRouter:
    """/healthz, /readyz (checks run concurrently, each within `readiness_timeout`), /metrics.

    /readyz is 503 when a readiness check fails; otherwise 200, with status
    "degraded" and the reasons when a degradation check reports one.

    Each scrape of /metrics runs the readiness checks too (sharing a run already
    going), so earlyhelp_readiness_check_ok is current wherever Prometheus
    scrapes, whether or not an orchestrator probes /readyz (compose does not).
    """
    degradations = dict(degradation_checks or {})
    router = APIRouter(include_in_schema=False)
    checks = [_TimedCheck(name, check) for name, check in readiness_checks.items()]
    gauge = readiness_gauge(metrics_registry)

    async def readiness_failures() -> list[str | None]:
        failures = await asyncio.gather(*(check.failure(readiness_timeout) for check in checks))
        for check, failure in zip(checks, failures, strict=True):
            gauge.labels(check.name).set(0 if failure else 1)
        return failures

    @router.get("/healthz")
    async def liveness() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readiness() -> JSONResponse:
        failures = await readiness_failures()
        results = {
            check.name: failure or "ok" for check, failure in zip(checks, failures, strict=True)
        }
        failing = [check.name for check, failure in zip(checks, failures, strict=True) if failure]
        degraded = {name: reason for name, check in degradations.items() if (reason := check())}
        results |= {name: degraded.get(name, "ok") for name in degradations}
        if not failing:
            status = "degraded" if degraded else "ready"
            return JSONResponse({"status": status, "checks": results})
        return JSONResponse(
            {
                "type": problem_type("not-ready"),
                "title": "Service not ready",
                "status": 503,
                "detail": f"Failing readiness checks: {', '.join(failing)}.",
                "checks": results,
            },
            status_code=503,
            media_type=PROBLEM_MEDIA_TYPE,
        )

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        await readiness_failures()
        # Prometheus asks for OpenMetrics when it can take it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await asyncio.to_thread(encoder, metrics_registry)
        return Response(body, media_type=content_type)

    return router
