"""The hub each schemathesis module of tests/api runs against, and its callers' tokens."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest

from hub.testing import BACKEND
from tests.harness import Hub


@pytest.fixture(scope="module")
def hub(request: pytest.FixtureRequest, kafka_bootstrap: str, tmp_path_factory) -> Iterator[Hub]:
    """The hub as processes, one per module: what one module's run leaves in the
    services' databases never changes what another module's run sees.

    A module runs only the services its operations and seeded records need (its
    `HUB_SERVICES`): the others would spend the module's minutes idling, on the CPU
    the suite's other half runs on."""
    extra_env = {}
    if BACKEND == "testcontainers":
        # Apache Kafka refuses sessions shorter than group.min.session.timeout.ms (6 s).
        extra_env = {
            "EARLYHELP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "EARLYHELP_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        }
    # SQLite only: the HTTP layer under test is the same on PostgreSQL, where the
    # other suites exercise the stores.
    services = request.module.HUB_SERVICES
    workdir = tmp_path_factory.mktemp("hub")
    with Hub(workdir, kafka_bootstrap, services=services, extra_env=extra_env) as started:
        yield started


@pytest.fixture(scope="module")
def auth(hub: Hub) -> Callable[[str], dict[str, str]]:
    """The Authorization header of a client of the identities file, by client id.

    One token per client for the module (a token lasts 15 minutes; a module runs for
    less than two), rather than one per generated request.
    """
    issued = functools.cache(hub.auth)
    return lambda client_id: dict(issued(client_id))
