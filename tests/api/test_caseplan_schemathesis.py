"""Schemathesis against case plan's OpenAPI, on a whole hub running as processes.

Before the run, social care steps a Harlesden family down and the team manager
allocates it (through allocation) to Samira Okafor: an open case. Part of the
generated requests naming a case or a family name this one (see
`steer_to_seeded_records`), the rest name nothing. Case plan is called by the
authority's staff and by one partner (docs/caseplan.md, "Who may do what"):

- `test_no_server_errors_and_responses_conform`, as a team manager (cases, their
  commands and the performance report), a practitioner (cases and their
  commands), front-door staff (the chronology only) and children's social care
  (the partner that steps families down): never a 5xx; the status code,
  content type, headers and body are ones the schema documents.
- `test_unsupported_methods_are_refused_with_allow`: a method the path does not
  offer gets 405 with an `Allow` header naming the path's methods.
- `test_invalid_requests_are_refused`: a request the schema forbids is refused
  (4xx), not accepted. It is sent by the one caller the operation lets through
  (children's social care for step-downs, the team manager for the rest),
  since a 403 for the wrong caller would pass whatever the body.

Not checked, on purpose: `positive_data_acceptance`. The schema cannot express
what case plan checks beyond it (the census factor rules, a need of the case's
assessment, a review date within the maximum interval, `reason_detail` for
closure reason `other`, a cursor the API gave out), and a generated case or
family id names nothing in the hub, so a schema-valid request is often rightly
refused with 404 or 422.

The two bugs this module found are fixed and kept as regression tests below,
with their inputs: a saved assessment draft answered 200, which the schema did
not document (it does now); the performance report read `to=0` as 1 January
1970 (pydantic's lax mode, as intake's module found for referrals). Every date
and boolean case plan takes now refuses what is not an ISO 8601 date or a JSON
boolean, a stepped-down child's date of birth too (found by hand).

The schema is built at import time from case plan's routers (see
tests/api/support.py for why); `test_the_schema_under_test_is_the_one_caseplan_serves`
proves it is the document the live service serves. Generation is deterministic
and bounded: at most `MAX_EXAMPLES` random examples per operation and
generation mode, 10 s per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
import schemathesis

from caseplan.service import definition
from tests.api.support import (
    ALL_PHASES,
    CONFORMANCE_CHECKS,
    INFORMATION_GOVERNANCE,
    METHODS_PHASES,
    NEGATIVE_DATA_CHECKS,
    PRACTITIONER,
    REQUEST_TIMEOUT_S,
    SOCIAL_CARE,
    SUBJECT_ACCESS,
    TEAM_MANAGER,
    UNSUPPORTED_METHOD_CHECKS,
    allocate_to_samira,
    assert_documented,
    assert_served_schema_is,
    schemathesis_schema,
    service_openapi,
    steer_to_seeded_records,
    step_down_case,
)
from tests.harness import STAFF, Hub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# The seeded case is stepped down at case plan and allocated at allocation.
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


def authorised_caller(operation: schemathesis.APIOperation) -> str:
    """The one caller case plan lets through to the operation (docs/caseplan.md)."""
    if operation.path.startswith(SUBJECT_ACCESS):
        return INFORMATION_GOVERNANCE
    if operation.path == "/v1/step-downs":
        return SOCIAL_CARE
    return TEAM_MANAGER


@pytest.fixture(scope="module")
def caseplan_url(hub: Hub) -> str:
    return hub.url("caseplan")


@pytest.fixture(scope="module", autouse=True)
def seeded_case(hub: Hub, auth: Callable[[str], dict[str, str]]) -> Iterator[dict]:
    """A family stepped down by social care and allocated to Samira Okafor: an open case
    in Harlesden that the team manager and the practitioner may both work."""
    event = step_down_case(hub, auth, "SCHEMATHESIS-CASEPLAN")
    allocate_to_samira(hub, auth, event["case_id"])
    SEEDED.update(case_id=[event["case_id"]], family_id=[event["family_id"]])
    yield event
    SEEDED.clear()


# --- regressions found by schemathesis ------------------------------------------------

_NEED = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
_CHILD = {
    "person_id": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
    "given_name": "Kai",
    "family_name": "Robson",
    "postcode": "NW10 4AB",
}
_STEP_DOWN = {
    "social_care_reference": "SCHEMATHESIS-REGRESSION",
    "reason": "Child in need plan closed.",
    "social_care_summary": "Section 17 involvement.",
}


def test_a_saved_draft_answers_the_200_the_schema_documents(auth, caseplan_url, seeded_case):
    # Schemathesis's input: the 200 of a saved draft was not in the OpenAPI document.
    path = "/v1/cases/{case_id}/assessments"
    response = httpx.post(
        caseplan_url + path.format(case_id=seeded_case["case_id"]),
        json={},
        headers=auth(TEAM_MANAGER),
        timeout=REQUEST_TIMEOUT_S,
    )

    assert response.status_code == 200, response.text
    assert_documented(SCHEMA, "POST", path, response)


@pytest.mark.parametrize(
    ("caller", "path", "body", "field"),
    [
        # Not schemathesis's find but the fault it found: a child born on 1 January 1970.
        (
            SOCIAL_CARE,
            "/v1/step-downs",
            {**_STEP_DOWN, "children": [{**_CHILD, "date_of_birth": 0}]},
            "children[0].date_of_birth",
        ),
        # The other dates and booleans case plan read leniently.
        (TEAM_MANAGER, "/v1/cases/{case_id}/assessments", {"complete": "off"}, "complete"),
        (
            TEAM_MANAGER,
            "/v1/cases/{case_id}/actions",
            {"what": "Attend a parenting course.", "who": "Leila Hassan", "by_when": 0},
            "by_when",
        ),
        (
            TEAM_MANAGER,
            "/v1/cases/{case_id}/reviews",
            {
                "progress": [{"need_id": _NEED, "rating": "improved", "note": "Better."}],
                "next_review_date": 1751414400,
            },
            "next_review_date",
        ),
        (
            TEAM_MANAGER,
            "/v1/cases/{case_id}/closure",
            {"reason": "needs_met", "outcomes": [{"need_id": _NEED, "achieved": "yes"}]},
            "outcomes[0].achieved",
        ),
    ],
)
def test_dates_and_booleans_in_bodies_are_not_coerced(
    auth, caseplan_url, seeded_case, caller, path, body, field
) -> None:
    url = caseplan_url + path.format(case_id=seeded_case["case_id"])
    response = httpx.post(url, json=body, headers=auth(caller), timeout=REQUEST_TIMEOUT_S)

    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("to", ["0", "1751414400"])
def test_report_dates_are_iso_dates_only(auth, caseplan_url, to) -> None:
    # Schemathesis's input was `to=0`: the report ran to 1 January 1970.
    response = httpx.get(
        caseplan_url + "/v1/reports/performance",
        params={"to": to},
        headers=auth(TEAM_MANAGER),
        timeout=REQUEST_TIMEOUT_S,
    )

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["query.to"]


def test_the_schema_under_test_is_the_one_caseplan_serves(caseplan_url: str) -> None:
    assert_served_schema_is(caseplan_url, SCHEMA)


@pytest.mark.parametrize("caller", [TEAM_MANAGER, PRACTITIONER, STAFF, SOCIAL_CARE])
@SCHEMA.parametrize()
def test_no_server_errors_and_responses_conform(case, auth, caseplan_url, caller) -> None:
    case.call_and_validate(base_url=caseplan_url, headers=auth(caller), checks=CONFORMANCE_CHECKS)


@METHODS_SCHEMA.parametrize()
def test_unsupported_methods_are_refused_with_allow(case, auth, caseplan_url) -> None:
    case.call_and_validate(
        base_url=caseplan_url, headers=auth(TEAM_MANAGER), checks=UNSUPPORTED_METHOD_CHECKS
    )


@SCHEMA.parametrize()
def test_invalid_requests_are_refused(case, auth, caseplan_url) -> None:
    caller = authorised_caller(case.operation)
    case.call_and_validate(base_url=caseplan_url, headers=auth(caller), checks=NEGATIVE_DATA_CHECKS)
