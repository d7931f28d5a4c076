"""Every operation of every service that reads a JSON body answers a body it cannot read
with the documented `malformed-body` problem (docs/partners.md).

FastAPI reads the body before it resolves any dependency, so each service's routers,
mounted the way the service mounts them, answer without a token, database or broker.
"""

import re

import httpx
import pytest
from prometheus_client import CollectorRegistry

from allocation.service import definition as allocation
from caseplan.service import definition as caseplan
from hub.http.app import create_app
from intake.service import definition as intake
from notifications.service import definition as notifications

pytestmark = pytest.mark.anyio

# The unreadable bodies of issue 23 (invalid UTF-8, Latin-1, nested 10,000 deep,
# a 5,000-digit number, truncated JSON) and the code each is refused with.
UNREADABLE = {
    b'{"reason": "\xff\xfe"}': "body_not_utf8",
    '{"reason": "Zoë"}'.encode("latin-1"): "body_not_utf8",
    b"[" * 10_000 + b"]" * 10_000: "json_too_deep",
    b'{"reason": ' + b"9" * 5_000 + b"}": "json_number_too_long",
    b'{"reason": "Zo': "json_invalid",
}

# Any id will do: the body is read before the path is validated.
ANY_ID = "3f1c2b7a-5d4e-4c8b-9a6f-0e1d2c3b4a59"


def _app_and_operations_with_json_bodies(definition):
    app = create_app(
        service_name=definition.name,
        title=definition.title,
        version=definition.version,
        description=definition.description,
        routers=definition.routers,
        metrics_registry=CollectorRegistry(),
    )
    operations = [
        (method.upper(), re.sub(r"\{[^}]+\}", ANY_ID, path))
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]
    return app, operations


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    "definition",
    [intake, allocation, caseplan, notifications],
    ids=lambda definition: definition.name,
)
async def test_a_body_that_cannot_be_read_is_malformed_body(definition) -> None:
    app, operations = _app_and_operations_with_json_bodies(definition)
    assert operations, f"{definition.name} reads no JSON body"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for method, url in operations:
            for body, code in UNREADABLE.items():
                response = await client.request(
                    method, url, content=body, headers={"Content-Type": "application/json"}
                )

                assert response.status_code == 400, (method, url, code, response.text)
                problem = response.json()
                assert problem["type"] == "https://earlyhelp.example/problems/malformed-body"
                errors = [(error["field"], error["code"]) for error in problem["errors"]]
                assert errors == [("body", code)], (method, url)
