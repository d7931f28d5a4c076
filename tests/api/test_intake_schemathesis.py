"""Schemathesis against intake's OpenAPI, on a whole hub running as processes.

Schemathesis generates requests from every operation intake documents (the
documented examples, then boundary and type-mutated values of each field, then
random ones, valid and invalid) and sends them to the live intake service.
Each response is checked:

- `test_no_server_errors_and_responses_conform`, as a partner system (Harlesden
  Primary School: `referrals:write referrals:read`) and as front-door staff (who
  reach the triage and queue operations): never a 5xx; the status code, content
  type, headers and body are ones the schema documents.
- `test_unsupported_methods_are_refused_with_allow`: a method the path does not
  offer gets 405 with an `Allow` header naming the path's methods.
- `test_invalid_requests_are_refused`: a request the schema forbids is refused
  (4xx), not accepted.

Not checked, on purpose: `positive_data_acceptance` (a schema-valid request is
accepted). The schema cannot express the rules intake enforces beyond it (the
NHS number's modulus 11 check digit, the UPN check letter, "referrer unless
anonymous", "consent or a safeguarding override", "exactly one of
date_of_birth and expected_date_of_birth", "locality only for early_help", a
cursor the API gave out), so a schema-valid request is often rightly refused
with 422; so is a generated `Idempotency-Key` an earlier example used with
another body.

Two bugs this module found are fixed and kept as regression tests below, with
their exact inputs: numbers read as dates and "off" as a boolean (pydantic's
lax mode), and a 405 whose `Allow` named one route's method, not the path's.

The schema the tests are generated from is built at import time from intake's
routers, the way intake builds it: pytest needs the operations when it collects
the tests, before any hub runs, and `schemathesis.pytest.from_fixture`, which
would load them from the running service, fails on pytest 9.2 (it sets
`Node._nodeid`, which pytest removed).
`test_the_schema_under_test_is_the_one_intake_serves` proves it is the document
the live service serves at `/openapi.json`.

Generation is deterministic (the same cases every run, so a failure reproduces)
and bounded: at most 50 random examples per operation and generation mode,
10 s per request.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import checks

from hub.http.app import create_app
from hub.testing import BACKEND, running_broker
from intake.schemas import ReferralSubmission
from intake.service import definition
from tests.harness import PARTNER, STAFF, Hub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist schemathesis collapses each test's operations into one item
    # that passes whatever the API does (seen with schemathesis 4): refuse to run here.
    raise pytest.UsageError(
        "tests/api runs without pytest-xdist: `pytest tests/api` (make test does it)"
    )

MAX_EXAMPLES = 50
REQUEST_TIMEOUT_S = 10


def intake_openapi() -> dict[str, Any]:
    """Intake's OpenAPI document, built the way `create_service_app` builds it, without I/O."""
    app = create_app(
        service_name=definition.name,
        title=definition.title,
        version=definition.version,
        description=definition.description,
        routers=definition.routers,
    )
    return app.openapi()


def _schema(phases: list[str]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(intake_openapi())
    schema.config.update(request_timeout=REQUEST_TIMEOUT_S)
    # Deterministic, so that a failure is one every run reproduces; no Hypothesis
    # example database, so that a run leaves nothing behind.
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    schema.config.phases.update(phases=phases)
    return schema


SCHEMA = _schema(["examples", "coverage", "fuzzing"])
# Undocumented methods are only tried in the coverage phase.
METHODS_SCHEMA = _schema(["coverage"])
EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


# --- the hub -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bootstrap(request, tmp_path_factory) -> Iterator[str]:
    if BACKEND == "testcontainers":
        yield request.getfixturevalue("kafka_bootstrap")
        return
    with running_broker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="module")
def hub(bootstrap: str, tmp_path_factory) -> Iterator[Hub]:
    extra_env = {}
    if BACKEND == "testcontainers":
        # Apache Kafka refuses sessions shorter than group.min.session.timeout.ms (6 s).
        extra_env = {
            "EARLYHELP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "EARLYHELP_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        }
    # SQLite only: the HTTP layer under test is the same on PostgreSQL, where the
    # other suites exercise the stores.
    with Hub(tmp_path_factory.mktemp("hub"), bootstrap, extra_env=extra_env) as started:
        yield started


@pytest.fixture(scope="module")
def intake_url(hub: Hub) -> str:
    return hub.url("intake")


@pytest.fixture(scope="module")
def partner(hub: Hub) -> dict[str, str]:
    """The partner's Authorization header (its token lasts 15 minutes: the whole module)."""
    return hub.auth(PARTNER)


# --- regressions found by schemathesis ------------------------------------------------

# Paths with more than one documented method, where Starlette's own Allow fell short.
SHARED_PATHS = sorted(path for path, item in SCHEMA.raw_schema["paths"].items() if len(item) > 1)


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    holder: Any = body
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return body


_OVERRIDE = {"reason": "Asking would put the child at risk.", "recorded_by": "jo.adeyemi"}


@pytest.mark.parametrize(
    ("field", "body"),
    [
        (
            "safeguarding_override.recorded_at",
            _with(("safeguarding_override",), {**_OVERRIDE, "recorded_at": 0}),
        ),
        ("consent.given_at", _with(("consent", "given_at"), 1740756600)),
        ("consent.given_at", _with(("consent", "given_at"), "1740756600")),
        ("children[0].date_of_birth", _with(("children", 0, "date_of_birth"), 0)),
        ("children[0].date_of_birth", _with(("children", 0, "date_of_birth"), "0")),
        (
            "household_members[0].date_of_birth",
            _with(("household_members", 0, "date_of_birth"), 596073600),
        ),
        (
            "household_members[0].parental_responsibility",
            _with(("household_members", 0, "parental_responsibility"), "off"),
        ),
    ],
)
def test_dates_and_booleans_are_not_coerced(intake_url, partner, field, body) -> None:
    response = httpx.post(intake_url + "/v1/referrals", json=body, headers=partner, timeout=10)

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE"])
@pytest.mark.parametrize("path", SHARED_PATHS)
def test_a_405_names_every_method_of_the_path(intake_url, partner, path, method) -> None:
    response = httpx.request(method, intake_url + path, headers=partner, timeout=10)

    assert response.status_code == 405
    allowed = {name.strip() for name in response.headers["allow"].split(",")}
    assert allowed == {name.upper() for name in SCHEMA.raw_schema["paths"][path]}


# --- the schemathesis run ------------------------------------------------------------


def test_the_schema_under_test_is_the_one_intake_serves(intake_url: str) -> None:
    served = httpx.get(intake_url + "/openapi.json", timeout=10)

    assert served.status_code == 200
    assert served.json() == SCHEMA.raw_schema


@pytest.mark.parametrize("caller", [PARTNER, STAFF])
@SCHEMA.parametrize()
def test_no_server_errors_and_responses_conform(case, hub, caller) -> None:
    case.call_and_validate(
        base_url=hub.url("intake"),
        headers=hub.auth(caller),
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_headers_conformance,
            checks.response_schema_conformance,
        ],
    )


@METHODS_SCHEMA.parametrize()
def test_unsupported_methods_are_refused_with_allow(case, intake_url, partner) -> None:
    case.call_and_validate(
        base_url=intake_url,
        headers=partner,
        checks=[checks.unsupported_method, checks.allow_header_conformance],
    )


@SCHEMA.parametrize()
def test_invalid_requests_are_refused(case, intake_url, partner) -> None:
    case.call_and_validate(
        base_url=intake_url,
        headers=partner,
        checks=[checks.not_a_server_error, checks.negative_data_rejection],
    )
