"""Schemathesis against intake's OpenAPI, on a whole hub running as processes.

Schemathesis generates requests from every operation intake documents (the
documented examples, then boundary and type-mutated values of each field, then
random ones, valid and invalid) and sends them to the live intake service.
Part of those naming a referral name one of two the school referred before the
run (see `steer_to_seeded_records`); the rest name none. Each response is
checked:

- `test_no_server_errors_and_responses_conform`, as a partner system (Harlesden
  Primary School: `referrals:write referrals:read`) and as front-door staff (who
  reach the triage and queue operations): never a 5xx; the status code, content
  type, headers and body are ones the schema documents.
- `test_unsupported_methods_are_refused_with_allow`: a method the path does not
  offer gets 405 with an `Allow` header naming the path's methods.
- `test_invalid_requests_are_refused`: a request the schema forbids is refused
  (4xx), not accepted. It is sent by a caller the operation lets through
  (front-door staff for triage and matching, the partner for the rest), since a
  403 for the wrong caller would pass whatever the request.

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
routers, the way intake builds it (tests/api/support.py says why);
`test_the_schema_under_test_is_the_one_intake_serves` proves it is the document
the live service serves at `/openapi.json`.

Generation is deterministic (the same cases every run, so a failure reproduces)
and bounded: at most 25 random examples per operation and generation mode,
10 s per request.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis

from intake.schemas import ReferralSubmission
from intake.service import definition
from tests.api.support import (
    ALL_PHASES,
    CONFORMANCE_CHECKS,
    INFORMATION_GOVERNANCE,
    METHODS_PHASES,
    NEGATIVE_DATA_CHECKS,
    REQUEST_TIMEOUT_S,
    SUBJECT_ACCESS,
    UNSUPPORTED_METHOD_CHECKS,
    assert_served_schema_is,
    schemathesis_schema,
    service_openapi,
    steer_to_seeded_records,
)
from tests.harness import PARTNER, STAFF, Hub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Intake alone: every operation and seeded referral is its own.
HUB_SERVICES = ("intake",)

# Bounds the fuzzing phase only: the examples and coverage phases (the documented
# examples, then every boundary and type-mutated value of each field) run whole.
# 25 random cases per operation keep `make test` within its time budget.
MAX_EXAMPLES = 25

OPENAPI = service_openapi(definition)
SCHEMA = schemathesis_schema(OPENAPI, phases=ALL_PHASES, max_examples=MAX_EXAMPLES)
METHODS_SCHEMA = schemathesis_schema(OPENAPI, phases=METHODS_PHASES, max_examples=MAX_EXAMPLES)
SEEDED: dict[str, list[str]] = {}
steer_to_seeded_records(SCHEMA, SEEDED)
EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


def authorised_caller(operation: schemathesis.APIOperation) -> str:
    """A caller intake lets through to the operation: staff triage and match, partners refer."""
    if operation.path.startswith(SUBJECT_ACCESS):
        # Intake alone runs here: a person found would be gathered from services that are
        # not (a 502). The seeded referrals' children are not the documented lookup's.
        return INFORMATION_GOVERNANCE
    path = operation.path
    if path.endswith("/triage") or "/matches/" in path or path.endswith("/unlinking"):
        return STAFF
    return PARTNER


@pytest.fixture(scope="module")
def intake_url(hub: Hub) -> str:
    return hub.url("intake")


@pytest.fixture(scope="module")
def partner(auth: Callable[[str], dict[str, str]]) -> dict[str, str]:
    return auth(PARTNER)


@pytest.fixture(scope="module", autouse=True)
def seeded_referrals(intake_url: str, partner: dict[str, str]) -> Iterator[list[str]]:
    """Two referrals of the school's (the documented example, under two references)."""
    referral_ids = []
    for reference in ("SCHEMATHESIS-1", "SCHEMATHESIS-2"):
        response = httpx.post(
            intake_url + "/v1/referrals",
            json={**EXAMPLE, "partner_reference": reference},
            headers=partner,
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.status_code == 202, response.text
        referral_ids.append(response.json()["referral_id"])
    SEEDED.update(referral_id=referral_ids)
    yield referral_ids
    SEEDED.clear()


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
    assert_served_schema_is(intake_url, SCHEMA)


@pytest.mark.parametrize("caller", [PARTNER, STAFF])
@SCHEMA.parametrize()
def test_no_server_errors_and_responses_conform(case, auth, intake_url, caller) -> None:
    case.call_and_validate(base_url=intake_url, headers=auth(caller), checks=CONFORMANCE_CHECKS)


@METHODS_SCHEMA.parametrize()
def test_unsupported_methods_are_refused_with_allow(case, intake_url, partner) -> None:
    case.call_and_validate(base_url=intake_url, headers=partner, checks=UNSUPPORTED_METHOD_CHECKS)


@SCHEMA.parametrize()
def test_invalid_requests_are_refused(case, auth, intake_url) -> None:
    caller = authorised_caller(case.operation)
    case.call_and_validate(base_url=intake_url, headers=auth(caller), checks=NEGATIVE_DATA_CHECKS)
