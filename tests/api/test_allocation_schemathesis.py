"""Schemathesis against allocation's OpenAPI, on a whole hub running as processes.

Before the run, social care steps two Harlesden families down (allocation queues
both; the team manager allocates one to Samira Okafor) and the panel chair
schedules a panel; part of the generated requests naming a case, worker or panel
name one of these (see `steer_to_seeded_records`), the rest name nothing.
Allocation is for the authority's staff only (a partner's token is refused on
every operation), so it is called as the staff who use it (docs/allocation.md):

- `test_no_server_errors_and_responses_conform`, as a team manager (reads,
  allocates, overrides, changes the registry), a practitioner (reads the queue,
  caseloads, registry and panels) and a panel chair (schedules panels and
  records their decisions): never a 5xx; the status code, content type,
  headers and body are ones the schema documents.
- `test_unsupported_methods_are_refused_with_allow`: a method the path does not
  offer gets 405 with an `Allow` header naming the path's methods.
- `test_invalid_requests_are_refused`: a request the schema forbids is refused
  (4xx), not accepted. It is sent by the one caller the operation lets through
  (the panel chair for the panels' commands, the team manager for the rest),
  since a 403 for the wrong caller would pass whatever the body.

Not checked, on purpose: `positive_data_acceptance`. The schema cannot express
what allocation checks beyond it (a team and worker, or `auto`, not both; the
worker in that team; the path's id equal to the body's; a locality, provider or
service the registry knows; a cursor the API gave out), and a generated case,
panel or worker id names nothing in the hub, so a schema-valid request is often
rightly refused with 404 or 422.

The bug this module found is fixed and kept as a regression test below, with its
input: a panel meeting on `0`, read as 1 January 1970 (pydantic's lax mode, as
intake's module found for referrals); every date and boolean allocation takes
now refuses what is not an ISO 8601 date or a JSON boolean.

The schema is built at import time from allocation's routers (see
tests/api/support.py for why); `test_the_schema_under_test_is_the_one_allocation_serves`
proves it is the document the live service serves. Generation is deterministic
and bounded: at most `MAX_EXAMPLES` random examples per operation and
generation mode, 10 s per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis

from allocation.schemas import DecisionRequest, PanelRequest
from allocation.service import definition
from tests.api.support import (
    ALL_PHASES,
    CONFORMANCE_CHECKS,
    INFORMATION_GOVERNANCE,
    METHODS_PHASES,
    NEGATIVE_DATA_CHECKS,
    PANEL_CHAIR,
    PRACTITIONER,
    REQUEST_TIMEOUT_S,
    SAMIRA,
    SUBJECT_ACCESS,
    TEAM_MANAGER,
    UNSUPPORTED_METHOD_CHECKS,
    allocate_to_samira,
    assert_served_schema_is,
    schemathesis_schema,
    service_openapi,
    steer_to_seeded_records,
    step_down_case,
)
from tests.harness import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# The seeded cases are stepped down at case plan and queued by allocation.
HUB_SERVICES = ("allocation", "caseplan")

# Bounds the fuzzing phase only: the examples and coverage phases (the documented
# examples, then every boundary and type-mutated value of each field) run whole.
# 25 random cases per operation keep `make test` within its time budget.
MAX_EXAMPLES = 25

OPENAPI = service_openapi(definition)
SCHEMA = schemathesis_schema(OPENAPI, phases=ALL_PHASES, max_examples=MAX_EXAMPLES)
METHODS_SCHEMA = schemathesis_schema(OPENAPI, phases=METHODS_PHASES, max_examples=MAX_EXAMPLES)
SEEDED: dict[str, list[str]] = {}
steer_to_seeded_records(SCHEMA, SEEDED)
PANEL = PanelRequest.model_config["json_schema_extra"]["examples"][0]


def authorised_caller(operation: schemathesis.APIOperation) -> str:
    """The one caller allocation lets through to the operation (docs/allocation.md)."""
    if operation.path.startswith(SUBJECT_ACCESS):
        return INFORMATION_GOVERNANCE
    if operation.method.upper() == "POST" and operation.path.startswith("/v1/panels"):
        return PANEL_CHAIR
    return TEAM_MANAGER


@pytest.fixture(scope="module")
def allocation_url(hub: Hub) -> str:
    return hub.url("allocation")


@pytest.fixture(scope="module", autouse=True)
def seeded_records(
    hub: Hub, auth: Callable[[str], dict[str, str]], allocation_url: str
) -> Iterator[dict[str, str]]:
    """Two families stepped down to Harlesden, one waiting in the queue and one allocated to
    Samira Okafor, and a Harlesden panel meeting."""
    waiting = step_down_case(hub, auth, "SCHEMATHESIS-ALLOCATION-1")
    allocated = step_down_case(hub, auth, "SCHEMATHESIS-ALLOCATION-2")
    allocate_to_samira(hub, auth, allocated["case_id"])
    panel = httpx.post(
        allocation_url + "/v1/panels",
        json=PANEL,
        headers=auth(PANEL_CHAIR),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert panel.status_code == 201, panel.text
    panel_id = panel.json()["panel_id"]
    SEEDED.update(
        case_id=[waiting["case_id"], allocated["case_id"]],
        worker_id=[SAMIRA],
        panel_id=[panel_id],
    )
    yield {"case_id": waiting["case_id"], "panel_id": panel_id}
    SEEDED.clear()


# --- regressions found by schemathesis ------------------------------------------------


def _panel_with(**changes) -> dict:
    return {**PANEL, **changes}


def _decision_with(**changes) -> dict:
    decision = DecisionRequest.model_config["json_schema_extra"]["examples"][0]
    package = [{**decision["package"][0], **changes.pop("package", {})}]
    return {**decision, "package": package, **changes}


@pytest.mark.parametrize(
    ("caller", "path", "body", "field"),
    [
        # Schemathesis's input: a panel meeting on 1 January 1970 was scheduled (201).
        (PANEL_CHAIR, "/v1/panels", _panel_with(meets_on=0), "meets_on"),
        # Fixed with it: the other dates and the boolean allocation read leniently.
        (
            PANEL_CHAIR,
            "/v1/panels/{panel_id}/decisions",
            _decision_with(package={"start_date": 1744588800}),
            "package[0].start_date",
        ),
        (
            PANEL_CHAIR,
            "/v1/panels/{panel_id}/decisions",
            _decision_with(review_date=0),
            "review_date",
        ),
        (TEAM_MANAGER, "/v1/cases/{case_id}/allocation", {"auto": "on"}, "auto"),
        (TEAM_MANAGER, "/v1/cases/{case_id}/allocation", {"auto": 1}, "auto"),
    ],
)
def test_dates_and_booleans_are_not_coerced(
    auth, allocation_url, seeded_records, caller, path, body, field
) -> None:
    url = allocation_url + path.format(**seeded_records)
    response = httpx.post(url, json=body, headers=auth(caller), timeout=REQUEST_TIMEOUT_S)

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


def test_the_schema_under_test_is_the_one_allocation_serves(allocation_url: str) -> None:
    assert_served_schema_is(allocation_url, SCHEMA)


@pytest.mark.parametrize("caller", [TEAM_MANAGER, PRACTITIONER, PANEL_CHAIR])
@SCHEMA.parametrize()
def test_no_server_errors_and_responses_conform(case, auth, allocation_url, caller) -> None:
    case.call_and_validate(base_url=allocation_url, headers=auth(caller), checks=CONFORMANCE_CHECKS)


@METHODS_SCHEMA.parametrize()
def test_unsupported_methods_are_refused_with_allow(case, auth, allocation_url) -> None:
    case.call_and_validate(
        base_url=allocation_url, headers=auth(TEAM_MANAGER), checks=UNSUPPORTED_METHOD_CHECKS
    )


@SCHEMA.parametrize()
def test_invalid_requests_are_refused(case, auth, allocation_url) -> None:
    caller = authorised_caller(case.operation)
    case.call_and_validate(
        base_url=allocation_url, headers=auth(caller), checks=NEGATIVE_DATA_CHECKS
    )
