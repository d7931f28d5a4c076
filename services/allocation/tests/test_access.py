"""Who may do what in allocation: every endpoint against every role, partners nowhere."""

import pytest

from .conftest import CHAIR, FRONT_DOOR, MANAGER, PRACTITIONER, SAMIRA, as_

NOBODY = "6f1c9a1e-0000-4000-8000-000000000000"
PARTNERS = ("harlesden-primary-school", "brent-health-visiting", "met-police-brent",
            "brent-childrens-social-care")  # fmt: skip
WORKER = {
    "worker_id": SAMIRA,
    "staff_client_id": "samira-okafor",
    "name": "Samira Okafor",
    "role": "Family support practitioner",
    "team": "harlesden-early-help",
    "hours_per_week": 37,
    "caseload_limit": 12,
    "email": "samira.okafor@brent.example.gov.uk",
}
PANEL = {
    "locality": "brent-harlesden",
    "name": "Harlesden EICG",
    "meets_on": "2031-04-02",
    "members": [{"name": "Grace Mensah", "agency": "Brent early help"}],
}
DECISION = {
    "case_id": NOBODY,
    "package": [
        {
            "provider_id": "brent-family-wellbeing-centres",
            "service_id": "triple-p-group",
            "start_date": "2031-04-14",
            "intensity": "standard",
        }
    ],
    "lead_professional": {"worker_id": SAMIRA},
    "members_present": [{"name": "Grace Mensah", "agency": "Brent early help"}],
}

# (method, path, body, the scope it needs)
ENDPOINTS = [
    ("get", "/v1/allocations", None, "allocations:read"),
    ("get", "/v1/allocations/timeliness", None, "allocations:read"),
    ("get", f"/v1/cases/{NOBODY}/allocation", None, "allocations:read"),
    ("post", f"/v1/cases/{NOBODY}/allocation", {"auto": True}, "allocations:write"),
    (
        "post",
        f"/v1/cases/{NOBODY}/reallocation",
        {"auto": True, "reason": "r"},
        "allocations:write",
    ),
    (
        "post",
        f"/v1/workers/{SAMIRA}/caseload/reallocation",
        {"auto": True, "reason": "r"},
        "allocations:write",
    ),
    ("get", f"/v1/workers/{SAMIRA}/caseload", None, "allocations:read"),
    ("get", "/v1/caseloads", None, "allocations:read"),
    ("get", "/v1/registry", None, "allocations:read"),
    ("put", f"/v1/registry/workers/{SAMIRA}", WORKER, "registry:write"),
    ("get", "/v1/providers/capacity", None, "allocations:read"),
    ("get", "/v1/panels", None, "panels:read"),
    ("post", "/v1/panels", PANEL, "panels:write"),
    ("get", f"/v1/panels/{NOBODY}", None, "panels:read"),
    ("post", f"/v1/panels/{NOBODY}/decisions", DECISION, "panels:write"),
]

ROLE_SCOPES = {
    PRACTITIONER: {"allocations:read", "panels:read"},
    MANAGER: {"allocations:read", "allocations:write", "registry:write", "panels:read"},
    CHAIR: {"allocations:read", "panels:read", "panels:write"},
    FRONT_DOOR: set(),
    **{partner: set() for partner in PARTNERS},
}


def test_every_endpoint_is_in_the_matrix(allocation):
    routes = [
        (method.lower(), route)
        for route in allocation.app.routes
        if getattr(route, "path", "").startswith("/v1/") and not route.path.startswith("/v1/oauth")
        for method in getattr(route, "methods", ())
    ]
    untested = [
        (method, route.path)
        for method, route in routes
        if not any(m == method and route.path_regex.match(p) for m, p, _, _ in ENDPOINTS)
    ]
    assert untested == []


@pytest.mark.parametrize("who", list(ROLE_SCOPES))
def test_the_authorisation_matrix(allocation, who):
    headers = as_(allocation, who)
    for method, path, body, scope in ENDPOINTS:
        kwargs = {"json": body} if body is not None else {}
        response = getattr(allocation, method)(path, headers=headers, **kwargs)
        if scope in ROLE_SCOPES[who]:
            assert response.status_code not in (401, 403), (who, method, path, response.text)
        else:
            assert response.status_code == 403, (who, method, path, response.status_code)
            assert response.headers["content-type"] == "application/problem+json"


def test_no_token_is_a_401_everywhere(allocation):
    for method, path, body, _ in ENDPOINTS:
        kwargs = {"json": body} if body is not None else {}
        assert getattr(allocation, method)(path, **kwargs).status_code == 401, path
