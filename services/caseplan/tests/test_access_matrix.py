"""Who may call which endpoint: every endpoint against every kind of caller.

A 403 or 401 is the refusal; anything else (404 for an unknown case, 422 for an
empty body) shows the caller got past the access check.
"""

from uuid import uuid4

import pytest

from caseplan.service import definition
from hub.testing import bearer

CASE = str(uuid4())
FAMILY = str(uuid4())
ENDPOINTS = {
    "chronology": ("GET", f"/v1/families/{FAMILY}/chronology"),
    "list_cases": ("GET", "/v1/cases"),
    "get_case": ("GET", f"/v1/cases/{CASE}"),
    "get_draft": ("GET", f"/v1/cases/{CASE}/assessments/draft"),
    "assessment": ("POST", f"/v1/cases/{CASE}/assessments"),
    "action": ("POST", f"/v1/cases/{CASE}/actions"),
    "outcome": ("POST", f"/v1/cases/{CASE}/outcomes"),
    "review": ("POST", f"/v1/cases/{CASE}/reviews"),
    "step_up": ("POST", f"/v1/cases/{CASE}/step-up"),
    "closure": ("POST", f"/v1/cases/{CASE}/closure"),
    "service_start": ("POST", f"/v1/cases/{CASE}/service-starts"),
    "step_down": ("POST", "/v1/step-downs"),
    "performance": ("GET", "/v1/reports/performance"),
    "outside_four_weeks": ("GET", "/v1/reports/performance/outside-four-weeks"),
    "annex_a": ("GET", "/v1/returns/annex-a/early-help"),
    "supporting_families": ("GET", "/v1/returns/supporting-families"),
}
READS = {"list_cases", "get_case", "get_draft"}
WRITES = {"assessment", "action", "outcome", "review", "step_up", "closure", "service_start"}
REPORTS = {"performance", "outside_four_weeks", "annex_a", "supporting_families"}
ALLOWED = {
    "samira-okafor": READS | WRITES | {"chronology"},
    "harlesden-team-manager": READS | WRITES | REPORTS | {"chronology"},
    "brent-panel-chair": READS | {"chronology"},
    "front-door-demo": {"chronology"},
    "brent-childrens-social-care": {"step_down"},
    "harlesden-primary-school": set(),
}


@pytest.fixture
def caseplan(service_client):
    return service_client(definition)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_endpoint_admits_exactly_the_roles_it_should(caseplan):
    refused = {}
    for who, allowed in ALLOWED.items():
        headers = bearer(caseplan.settings, who)
        for name, (method, path) in ENDPOINTS.items():
            body = {} if method == "POST" else None
            status = caseplan.request(method, path, json=body, headers=headers).status_code
            refused[(who, name)] = status == 403
            assert (name not in allowed) == (status == 403), (who, name, status)
    assert sum(refused.values()) == sum(
        len(ENDPOINTS) - len(allowed) for allowed in ALLOWED.values()
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_endpoint_needs_a_token(caseplan):
    for method, path in ENDPOINTS.values():
        body = {} if method == "POST" else None
        assert caseplan.request(method, path, json=body).status_code == 401, path
