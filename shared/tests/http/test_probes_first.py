"""Probes overtake a burst: ProbesFirstMiddleware admits other requests a few a turn."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Receive, Scope, Send

from hub.http.health import PROBE_PATHS
from hub.http.middleware import ProbesFirstMiddleware

pytestmark = pytest.mark.anyio

PER_TURN = 4


class Recording:
    """An ASGI app that notes each path as the request reaches it, then answers."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def request(app, path: str) -> None:
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    await app({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)


async def test_a_probe_behind_a_burst_reaches_the_app_within_a_turn() -> None:
    inner = Recording()
    app = ProbesFirstMiddleware(inner, probe_paths=PROBE_PATHS, per_turn=PER_TURN)
    burst = [asyncio.ensure_future(request(app, f"/v1/token/{n}")) for n in range(40)]
    probe = asyncio.ensure_future(request(app, "/healthz"))

    await asyncio.gather(*burst, probe)

    # All were ready together; the probe was scheduled last, yet it reached the app
    # before all but the first turn's requests.
    assert len(inner.reached) == 41
    assert inner.reached.index("/healthz") <= PER_TURN
    # The burst itself is served in the order it arrived.
    burst_order = [path for path in inner.reached if path != "/healthz"]
    assert burst_order == [f"/v1/token/{n}" for n in range(40)]


async def test_without_the_middleware_the_same_probe_waits_for_the_whole_burst() -> None:
    """The control: what the test above guards against."""
    inner = Recording()
    burst = [asyncio.ensure_future(request(inner, f"/v1/token/{n}")) for n in range(40)]
    probe = asyncio.ensure_future(request(inner, "/healthz"))

    await asyncio.gather(*burst, probe)

    assert inner.reached.index("/healthz") == 40


async def test_a_request_cancelled_while_waiting_gives_its_turn_to_the_next() -> None:
    inner = Recording()
    app = ProbesFirstMiddleware(inner, probe_paths=PROBE_PATHS, per_turn=1)
    first = asyncio.ensure_future(request(app, "/v1/a"))
    gone = asyncio.ensure_future(request(app, "/v1/gone"))
    last = asyncio.ensure_future(request(app, "/v1/b"))
    await asyncio.sleep(0)  # all three are waiting for their turn
    gone.cancel()

    await asyncio.gather(first, last)

    assert inner.reached == ["/v1/a", "/v1/b"]
    assert gone.cancelled()


async def test_requests_arriving_one_at_a_time_each_get_through() -> None:
    inner = Recording()
    app = ProbesFirstMiddleware(inner, probe_paths=PROBE_PATHS, per_turn=PER_TURN)
    for n in range(3):
        await request(app, f"/v1/one/{n}")

    assert inner.reached == ["/v1/one/0", "/v1/one/1", "/v1/one/2"]


def test_a_turn_admits_at_least_one_request() -> None:
    with pytest.raises(ValueError):
        ProbesFirstMiddleware(Recording(), probe_paths=PROBE_PATHS, per_turn=0)
