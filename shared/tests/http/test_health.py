"""Liveness, readiness with bounded checks, and what the schema leaves out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from hub.http import ReadinessCheck

pytestmark = pytest.mark.anyio

MakeApp = Callable[..., FastAPI]
MakeClient = Callable[[FastAPI], httpx.AsyncClient]


def passing() -> None:
    pass


def broker_down() -> None:
    raise ConnectionRefusedError("broker 127.0.0.1:9092 refused the connection")


async def test_liveness_is_always_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_every_check_passes(make_app: MakeApp, make_client: MakeClient) -> None:
    app = make_app({"database": passing, "broker": passing})
    async with make_client(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


async def test_a_degraded_worker_leaves_the_service_ready_but_says_why(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    waiting: list[str] = ["waiting for the database or broker: 1 partition(s) paused for 3s"]
    app = make_app(
        {"database": passing},
        degradation_checks={"consumer": lambda: waiting[0] if waiting else None},
    )
    async with make_client(app) as client:
        degraded = await client.get("/readyz")
        waiting.clear()
        recovered = await client.get("/readyz")

    assert degraded.status_code == 200
    assert degraded.json() == {
        "status": "degraded",
        "checks": {
            "database": "ok",
            "consumer": "waiting for the database or broker: 1 partition(s) paused for 3s",
        },
    }
    assert recovered.json() == {"status": "ready", "checks": {"database": "ok", "consumer": "ok"}}


async def test_a_failing_check_wins_over_a_degradation(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    app = make_app({"database": broker_down}, degradation_checks={"consumer": lambda: "waiting"})
    async with make_client(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["consumer"] == "waiting"


async def test_not_ready_names_the_failing_check(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    app = make_app({"database": passing, "broker": broker_down})
    async with make_client(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("ConnectionRefusedError: broker")
    assert "broker" in body["detail"]


async def test_each_scrape_reports_each_readiness_check_as_a_gauge(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    """Nobody need probe /readyz: the scrape itself runs the checks (the alert's metric)."""
    broker: list[ReadinessCheck] = [broker_down]
    app = make_app({"database": passing, "broker": lambda: broker[0]()})
    async with make_client(app) as client:
        down = (await client.get("/metrics")).text
        broker[0] = passing
        back = (await client.get("/metrics")).text

    assert 'earlyhelp_readiness_check_ok{check="database"} 1.0' in down
    assert 'earlyhelp_readiness_check_ok{check="broker"} 0.0' in down
    assert 'earlyhelp_readiness_check_ok{check="broker"} 1.0' in back


async def test_a_hanging_check_times_out_and_is_not_run_twice_at_once(
    make_app: MakeApp, make_client: MakeClient
) -> None:
    release = threading.Event()
    runs = 0

    def database_hangs() -> None:
        nonlocal runs
        runs += 1
        release.wait(10)

    checks: dict[str, ReadinessCheck] = {"database": database_hangs, "broker": passing}
    app = make_app(checks, readiness_timeout=0.2)
    async with make_client(app) as client:
        started = time.perf_counter()
        first = await client.get("/readyz")
        elapsed = time.perf_counter() - started
        second = await client.get("/readyz")
        release.set()
        time.sleep(0.05)
        third = await client.get("/readyz")

    assert first.status_code == 503
    assert elapsed < 1
    assert first.json()["checks"] == {"database": "timed out after 0.2s", "broker": "ok"}
    assert second.status_code == 503
    assert second.json()["checks"]["database"] == "timed out after 0.2s"
    assert third.status_code == 200
    assert runs == 2


async def test_probes_stay_out_of_the_openapi_schema(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert schema["info"] == {
        "title": "Test service",
        "version": "1.2.3",
        "description": "A service built only for the chassis tests.",
    }
    assert "servers" not in schema
    assert set(schema["paths"]) == {
        "/v1/referrals",
        "/v1/referrals/{referral_id}",
        "/v1/uploads",
        "/v1/broken",
        "/v1/whoami",
    }


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "/openapi.json" in response.text
