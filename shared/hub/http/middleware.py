"""Pure ASGI middlewares of the chassis: body limit, Prometheus metrics, server spans.

Pure ASGI rather than BaseHTTPMiddleware, which costs a task and a stream copy
per request.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from time import perf_counter

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.http.problems import Problem

UNMATCHED_ROUTE = "unmatched"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Tuned to an API whose requests take milliseconds; fewer buckets, fewer series.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException so that FastAPI's body parsing lets it through to the
    problem handlers instead of turning it into a 400.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, Problem.too_large(max_bytes).detail)


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413 problem.

    A declared Content-Length over the limit is refused before the app runs. A
    body without one (chunked) is counted as the app reads it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_length = _content_length(scope)
        if content_length is not None:
            if content_length > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                # The server holds the body to its declared length: nothing to count.
                await self.app(scope, receive, send)
            return

        received = 0
        response_started = False

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge(self.max_bytes)
            return message

        async def send_noting_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_counted, send_noting_start)
        except RequestBodyTooLarge:
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = Problem.too_large(self.max_bytes).to_response(instance=scope["path"])
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram
    in_progress: Gauge


_metrics_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = (
    weakref.WeakKeyDictionary()
)
_metrics_lock = threading.Lock()


def http_metrics(registry: CollectorRegistry = REGISTRY) -> HttpMetrics:
    """The HTTP metric families of `registry`, created on first use.

    A registry refuses a second family of the same name, and several apps
    (tests, or services sharing a process) may use one registry.
    """
    with _metrics_lock:
        metrics = _metrics_by_registry.get(registry)
        if metrics is None:
            metrics = HttpMetrics(
                requests=Counter(
                    "earlyhelp_http_requests",
                    "HTTP requests handled, by route template and status.",
                    ["service", "method", "route", "status"],
                    registry=registry,
                ),
                duration=Histogram(
                    "earlyhelp_http_request_duration_seconds",
                    "Time to handle an HTTP request, response body included.",
                    ["service", "method", "route"],
                    buckets=_DURATION_BUCKETS,
                    registry=registry,
                ),
                in_progress=Gauge(
                    "earlyhelp_http_requests_in_progress",
                    "HTTP requests being handled now.",
                    ["service"],
                    registry=registry,
                ),
            )
            _metrics_by_registry[registry] = metrics
        return metrics


class MetricsMiddleware:
    """Counts and times requests, labelled by route template to bound cardinality."""

    def __init__(
        self, app: ASGIApp, *, service: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.app = app
        self._service = service
        self._metrics = http_metrics(registry)
        self._in_progress = self._metrics.in_progress.labels(service)
        # labels() takes a lock and builds a key on every call; the label sets
        # are few (methods x routes x statuses), so keep the children.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self._in_progress.inc()
        started = perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = perf_counter() - started
            self._in_progress.dec()
            counter, histogram = self._children_for(scope, status)
            counter.inc()
            histogram.observe(elapsed)

    def _children_for(self, scope: Scope, status: int) -> tuple[Counter, Histogram]:
        method = _method_label(scope)
        route = _route_template(scope) or UNMATCHED_ROUTE
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self._metrics.requests.labels(self._service, method, route, str(status)),
                self._metrics.duration.labels(self._service, method, route),
            )
            self._children[key] = children
        return children


def _method_label(scope: Scope) -> str:
    return scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"


def _route_template(scope: Scope) -> str | None:
    """The matched route's path template; the router sets scope["route"] on a match."""
    return getattr(scope.get("route"), "path_format", None)


class _AsgiHeaderGetter(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation headers straight from the ASGI header list, without a copy."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_HEADER_GETTER = _AsgiHeaderGetter()
_tracer = trace.get_tracer("hub.http")


class TracingMiddleware:
    """One SERVER span per request, continuing the caller's `traceparent`.

    Used instead of FastAPI's built-in telemetry and the contrib instrumentation:
    it adds about half the per-request cost of the first and a third of the
    second, and records neither the query string nor exception messages, where
    a child's personal data could reach the trace backend. Named
    "METHOD /route/{template}" once the route is known.
    """

    def __init__(self, app: ASGIApp, *, excluded_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._excluded_paths = excluded_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._excluded_paths:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = _method_label(scope)
        parent = propagate.extract(scope["headers"], getter=_HEADER_GETTER)
        span = _tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.scheme": scope.get("scheme", "http"),
                "url.path": scope["path"],
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = _route_template(scope)
            if route is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(StatusCode.ERROR)
            span.end()
            context.detach(token)


class ProbesFirstMiddleware:
    """Lets the probes overtake the requests that arrived before them.

    A service answers on one event loop, and the loop runs what is ready in the
    order it became ready: a probe that arrives behind a burst of two hundred
    requests (a flood of bad tokens, a partner retrying everything at once) waits
    for all of them, and a kubelet that waits too long restarts a service that
    was only busy. So every other request first waits for its turn, and each turn
    of the loop admits at most `per_turn` of them; the probes never wait. Between
    two turns the loop reads its sockets, so a probe that arrives during a burst
    is answered within a turn or two, while the burst is served in order at the
    pace it would have been anyway. Under no burst a request waits one turn of an
    idle loop: microseconds.
    """

    def __init__(self, app: ASGIApp, *, probe_paths: frozenset[str], per_turn: int = 8) -> None:
        if per_turn < 1:
            raise ValueError("per_turn must be at least 1")
        self.app = app
        self._probe_paths = probe_paths
        self._per_turn = per_turn
        self._turns: _Turns | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self._probe_paths:
            await self._turns_of_this_loop().wait()
        await self.app(scope, receive, send)

    def _turns_of_this_loop(self) -> _Turns:
        loop = asyncio.get_running_loop()
        # One app may be served by several loops over its life (a test client
        # starts one per session), never by two at once.
        if self._turns is None or self._turns.loop is not loop:
            self._turns = _Turns(loop, self._per_turn)
        return self._turns


class _Turns:
    """Admits waiting requests `per_turn` at a time, one batch each turn of the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self.loop = loop
        self._per_turn = per_turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._admitting = False

    async def wait(self) -> None:
        turn = self.loop.create_future()
        self._waiting.append(turn)
        if not self._admitting:
            self._admitting = True
            self.loop.call_soon(self._admit)
        await turn

    def _admit(self) -> None:
        admitted = 0
        while self._waiting and admitted < self._per_turn:
            turn = self._waiting.popleft()
            # A request whose client went away was cancelled while it waited.
            if not turn.done():
                turn.set_result(None)
                admitted += 1
        if self._waiting:
            self.loop.call_soon(self._admit)
        else:
            self._admitting = False
