"""What the schemathesis modules of tests/api share: callers, schemas, checks, seeding.

Each module builds the schema of one service at import time, from that service's
routers, the way the service builds it: pytest needs the operations when it
collects the tests, before any hub runs, and `schemathesis.pytest.from_fixture`,
which would load them from the running service, fails on pytest 9.2 (it sets
`Node._nodeid`, which pytest removed). `assert_served_schema_is` proves, on the
live service, that it is the document the service serves at `/openapi.json`.

Ids schemathesis makes up name nothing in the hub, so alone a run would meet only
404s wherever a path names a case, panel, subscription or delivery. Each module
therefore seeds a few records in its hub, and `steer_to_seeded_records` sends part
of the generated requests to them.
"""

from __future__ import annotations

import copy
import os
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import pytest
import schemathesis
from prometheus_client import CollectorRegistry
from schemathesis import checks

from hub.http.app import create_app
from hub.service import ServiceDefinition
from tests.harness import Hub, wait_for

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist schemathesis collapses each test's operations into one item
    # that passes whatever the API does (seen with schemathesis 4): refuse to run here.
    # Raised on import, so each module that imports this one fails to collect, saying why.
    raise pytest.UsageError(
        "tests/api runs without pytest-xdist: `pytest tests/api` (make test does it)"
    )

# Clients of config/identities.yaml, beside tests.harness's PARTNER and STAFF.
TEAM_MANAGER = "harlesden-team-manager"
PRACTITIONER = "samira-okafor"
PANEL_CHAIR = "brent-panel-chair"
POLICE = "met-police-brent"
SOCIAL_CARE = "brent-childrens-social-care"
# Subject access (every service) is for information governance alone.
INFORMATION_GOVERNANCE = "information-governance-officer"
SUBJECT_ACCESS = "/v1/subject-access/"

REQUEST_TIMEOUT_S = 10

# Every response, whoever asks: no 5xx, and nothing the schema does not document.
CONFORMANCE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
UNSUPPORTED_METHOD_CHECKS = [checks.unsupported_method, checks.allow_header_conformance]
NEGATIVE_DATA_CHECKS = [checks.not_a_server_error, checks.negative_data_rejection]

ALL_PHASES = ["examples", "coverage", "fuzzing"]
# Undocumented methods are only tried in the coverage phase.
METHODS_PHASES = ["coverage"]


def service_openapi(definition: ServiceDefinition) -> dict[str, Any]:
    """The service's OpenAPI document, built the way `create_service_app` builds it, without
    I/O: no settings, database or broker."""
    app = create_app(
        service_name=definition.name,
        title=definition.title,
        version=definition.version,
        description=definition.description,
        routers=definition.routers,
        # Its own registry, so that building several services' apps in one process
        # registers nothing twice in the process-wide one.
        metrics_registry=CollectorRegistry(),
    )
    return app.openapi()


def schemathesis_schema(
    openapi: dict[str, Any], *, phases: list[str], max_examples: int
) -> schemathesis.BaseSchema:
    # A copy: schemathesis may work on the document it is given.
    schema = schemathesis.openapi.from_dict(copy.deepcopy(openapi))
    schema.config.update(request_timeout=REQUEST_TIMEOUT_S)
    # Deterministic, so that a failure is one every run reproduces; no Hypothesis
    # example database, so that a run leaves nothing behind. No Authorization header
    # of schemathesis's own: each test sends its caller's token instead, and a negative
    # case "without a token" would be judged accepted when that token let it through.
    schema.config.generation.update(
        max_examples=max_examples,
        deterministic=True,
        database="none",
        with_security_parameters=False,
    )
    schema.config.phases.update(phases=phases)
    return schema


def assert_served_schema_is(base_url: str, schema: schemathesis.BaseSchema) -> None:
    served = httpx.get(base_url + "/openapi.json", timeout=REQUEST_TIMEOUT_S)

    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def assert_documented(
    schema: schemathesis.BaseSchema, method: str, path: str, response: httpx.Response
) -> None:
    """The response's status code is one the operation documents, and its body matches."""
    documented = schema.raw_schema["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, f"{response.status_code} not in {documented}"
    # Checks the body only, and only under a documented status: hence the line above.
    schema[path][method].validate_response(response)


_HEX_DIGIT = re.compile("[0-9a-f]")


def _shape(value: str) -> str:
    """`value` with every lowercase hex digit alike: two UUIDs, or two `msg_` ids, match."""
    return _HEX_DIGIT.sub("h", value)


def steer_to_seeded_records(
    schema: schemathesis.BaseSchema, seeded: Mapping[str, Sequence[str]]
) -> None:
    """Send about half the generated requests whose path names a record to one seeded.

    `seeded` maps a path parameter to the ids of records the module created in its hub;
    the module's fixture fills it in once the hub runs. A generated value is replaced
    only when it has the shape of those ids (a generated id, never an invalid value of
    a negative case), and then when its checksum is even, so which requests meet a
    seeded record is as deterministic as the generation. DELETE is left alone: a seeded
    record deleted by the first operations would leave the others nothing to meet.
    """

    @schema.hook
    def map_path_parameters(context, path_parameters: dict[str, Any] | None):
        if not path_parameters or context.operation.method.upper() == "DELETE":
            return path_parameters
        for name, ids in seeded.items():
            value = path_parameters.get(name)
            if not ids or not isinstance(value, str) or _shape(value) != _shape(ids[0]):
                continue
            checksum = zlib.crc32(value.encode())
            if checksum % 2 == 0:
                path_parameters[name] = ids[checksum // 2 % len(ids)]
        return path_parameters


# --- records seeded through the services' own APIs -----------------------------------

SAMIRA = "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65"  # samira-okafor's worker id in config/registry.yaml
SAMIRAS_TEAM = "harlesden-early-help"


def step_down_case(hub: Hub, auth: Callable[[str], dict[str, str]], reference: str) -> dict:
    """A family children's social care steps down to early help in Harlesden: the event
    case plan recorded (with its `case_id` and `family_id`), once allocation has queued it.
    """
    body = {
        "social_care_reference": reference,
        "children": [
            {
                "person_id": "d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70",
                "given_name": "Kai",
                "family_name": "Robson",
                "date_of_birth": "2012-09-30",
                "postcode": "NW10 4AB",
            }
        ],
        "reason": "Child in need plan closed: risks reduced.",
        "social_care_summary": "Section 17 involvement; risks reduced.",
        "locality": "brent-harlesden",
    }
    response = httpx.post(
        hub.url("caseplan") + "/v1/step-downs",
        json=body,
        headers=auth(SOCIAL_CARE),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    event = response.json()["event"]

    def queued() -> bool:
        allocation = httpx.get(
            hub.url("allocation") + f"/v1/cases/{event['case_id']}/allocation",
            headers=auth(TEAM_MANAGER),
            timeout=REQUEST_TIMEOUT_S,
        )
        return allocation.status_code == 200

    wait_for(queued, 30, lambda: "allocation never queued the case\n" + hub.logs_tail())
    return event


def allocate_to_samira(hub: Hub, auth: Callable[[str], dict[str, str]], case_id: str) -> None:
    """The team manager makes Samira Okafor (practitioner samira-okafor) the lead professional;
    returns once case plan has opened the case."""
    response = httpx.post(
        hub.url("allocation") + f"/v1/cases/{case_id}/allocation",
        json={"team_id": SAMIRAS_TEAM, "worker_id": SAMIRA},
        headers=auth(TEAM_MANAGER),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 201, response.text

    def opened() -> bool:
        case = httpx.get(
            hub.url("caseplan") + f"/v1/cases/{case_id}",
            headers=auth(TEAM_MANAGER),
            timeout=REQUEST_TIMEOUT_S,
        )
        return case.status_code == 200 and case.json()["status"] == "open"

    wait_for(opened, 30, lambda: "case plan never opened the case\n" + hub.logs_tail())
