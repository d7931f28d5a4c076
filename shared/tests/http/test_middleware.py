"""Body size limit and Prometheus request metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.anyio

LIMIT = 1_000  # the client fixture's max_body_bytes


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    yield b'{"a": "'
    for _ in range(count):
        yield b"x" * size
    yield b'"}'


async def test_declared_content_length_over_the_limit_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/uploads", json={"a": "x" * LIMIT})

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert f"{LIMIT} bytes" in response.json()["detail"]


async def test_chunked_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/uploads", content=chunks(10, 200), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_chunked_body_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/uploads", content=chunks(4, 200), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200
    assert response.json() == {"fields": 1}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"service": "testsvc", **labels})


async def test_requests_are_counted_by_route_template(
    client: httpx.AsyncClient, registry: CollectorRegistry
) -> None:
    for referral_id in (1, 2, 3):
        await client.get(f"/v1/referrals/{referral_id}")
    await client.get("/v1/no/such/thing")
    await client.get("/v1/broken")
    await client.post("/v1/uploads", json={"a": "x" * LIMIT})

    route = "/v1/referrals/{referral_id}"
    counted = "earlyhelp_http_requests_total"
    assert sample(registry, counted, method="GET", route=route, status="404") == 3
    assert sample(registry, counted, method="GET", route="unmatched", status="404") == 1
    assert sample(registry, counted, method="GET", route="/v1/broken", status="500") == 1
    assert sample(registry, counted, method="POST", route="unmatched", status="413") == 1
    timed = "earlyhelp_http_request_duration_seconds_count"
    assert sample(registry, timed, method="GET", route=route) == 3
    assert sample(registry, "earlyhelp_http_requests_in_progress") == 0


async def test_metrics_endpoint_exposes_the_counter(client: httpx.AsyncClient) -> None:
    await client.get("/v1/referrals/1")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert (
        'earlyhelp_http_requests_total{method="GET",route="/v1/referrals/{referral_id}",'
        'service="testsvc",status="404"} 1.0'
    ) in response.text


async def test_metrics_endpoint_speaks_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_two_apps_can_share_a_registry(
    make_app: Callable[..., FastAPI], make_client: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    async with make_client(make_app()) as first, make_client(make_app()) as second:
        assert (await first.get("/healthz")).status_code == 200
        assert (await second.get("/healthz")).status_code == 200
