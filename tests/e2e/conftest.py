"""Fixtures of the end-to-end tests: whole hubs, each on a broker of its own.

A hub's consumer groups are named after its services (`earlyhelp-<service>`),
so two hubs on one broker would share groups and split each other's records:
every hub here gets its own broker (in testcontainers mode, where there is one
Kafka, hubs run one after the other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hub.testing import _POSTGRES_UNAVAILABLE, BACKEND, running_broker
from tests.harness import Hub


def _require_backend(backend: str) -> None:
    if backend == "postgresql" and _POSTGRES_UNAVAILABLE:
        pytest.skip(_POSTGRES_UNAVAILABLE)


def _hub_options(request) -> dict:
    """How hubs reach the containers in HUB_TEST_BACKEND=testcontainers mode."""
    if BACKEND != "testcontainers":
        return {}
    return {
        "postgres_admin_url": request.getfixturevalue("_containers")["postgres"],
        # Apache Kafka refuses sessions shorter than group.min.session.timeout.ms (6 s).
        "extra_env": {
            "EARLYHELP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "EARLYHELP_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        },
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request) -> str:
    """The database backend of the module's hub (override with indirect parametrize)."""
    _require_backend(request.param)
    return request.param


@pytest.fixture(scope="module")
def module_bootstrap(request, tmp_path_factory) -> Iterator[str]:
    if BACKEND == "testcontainers":
        yield request.getfixturevalue("kafka_bootstrap")
        return
    with running_broker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="module")
def hub(request, backend: str, module_bootstrap: str, tmp_path_factory) -> Iterator[Hub]:
    """One hub shared by a module's tests that neither stop nor break anything."""
    workdir = tmp_path_factory.mktemp(f"hub-{backend}")
    with Hub(workdir, module_bootstrap, backend=backend, **_hub_options(request)) as started:
        yield started


@pytest.fixture
def start_hub(request, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Start a hub for this test alone (stopped at its end): start_hub(bootstrap, backend)."""
    hubs: list[Hub] = []

    def start(bootstrap: str, backend: str = "sqlite", **options) -> Hub:
        _require_backend(backend)
        options = _hub_options(request) | options
        started = Hub(tmp_path / f"hub-{len(hubs)}", bootstrap, backend=backend, **options)
        started.start()
        hubs.append(started)
        return started

    yield start
    for started in hubs:
        started.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as c:
        yield c
