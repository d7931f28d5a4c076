"""Every failure answers with application/problem+json, naming fields but never their values."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
VALID_REFERRAL = {
    "partner": "health",
    "children": [{"nhs_number": "9434765919", "given_name": "Alex"}],
    "concern": "Missed appointments",
}


async def test_a_valid_request_passes(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/referrals", json=VALID_REFERRAL, headers={"Idempotency-Key": "key-12345"}
    )

    assert response.status_code == 201
    assert response.json() == {"children": 1}


async def test_422_names_every_invalid_field_by_path(client: httpx.AsyncClient) -> None:
    referral = {
        "partner": "social-club",
        "children": [
            {"nhs_number": "9434765919", "given_name": "Alex"},
            {"nhs_number": "Jane Doe 1 High St", "given_name": ""},
        ],
    }

    response = await client.post(
        "/v1/referrals?priority=urgent", json=referral, headers={"Idempotency-Key": "short"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://earlyhelp.example/problems/validation-error"
    assert problem["status"] == 422
    assert problem["instance"] == "/v1/referrals"
    assert {(error["field"], error["code"]) for error in problem["errors"]} == {
        ("query.priority", "int_parsing"),
        ("header.Idempotency-Key", "string_too_short"),
        ("partner", "literal_error"),
        ("children[1].nhs_number", "string_pattern_mismatch"),
        ("children[1].given_name", "string_too_short"),
        ("concern", "missing"),
    }
    assert all(error["message"] for error in problem["errors"])
    assert "6 fields" in problem["detail"]


async def test_422_never_echoes_the_submitted_values(client: httpx.AsyncClient) -> None:
    secrets_ = ["Jane Doe 1 High St", "social-club", "urgent", "k3y-x", "123e4567-notauuid"]
    referral = {
        "partner": secrets_[1],
        "children": [{"nhs_number": secrets_[0], "given_name": 42}],
        "concern": {"free text": secrets_[4]},
    }

    response = await client.post(
        f"/v1/referrals?priority={secrets_[2]}",
        json=referral,
        headers={"Idempotency-Key": secrets_[3]},
    )

    assert response.status_code == 422
    for value in secrets_:
        assert value not in response.text
    assert all(set(error) == {"field", "message", "code"} for error in response.json()["errors"])


async def test_path_parameter_errors_are_prefixed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/referrals/not-a-number")

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["path.referral_id"]


async def test_body_that_is_not_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/uploads", content=b'{"name": "Jane', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://earlyhelp.example/problems/malformed-body"
    assert "not valid JSON" in problem["detail"]
    assert problem["errors"][0]["field"] == "body"
    assert "Jane" not in response.text


# The bodies of issue 23, exactly: none of them can be read as JSON.
UNREADABLE_BODIES = [
    ("invalid UTF-8", b'{"name": "Jane \xff\xfe Doe"}', "body_not_utf8", "byte 15"),
    ("Latin-1", '{"name": "Zoë Jane"}'.encode("latin-1"), "body_not_utf8", "byte 12"),
    ("nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000, "json_too_deep", None),
    ("a 5,000-digit number", b'{"name": ' + b"7" * 5_000 + b"}", "json_number_too_long", None),
    ("truncated JSON", b'{"name": "Jane', "json_invalid", "character 9"),
]


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [case[1:] for case in UNREADABLE_BODIES],
    ids=[case[0] for case in UNREADABLE_BODIES],
)
async def test_every_unreadable_body_is_the_documented_malformed_body_problem(
    make_app, make_client, body: bytes, code: str, where: str | None
) -> None:
    # The services' own body limit: the `client` fixture's 1,000 bytes would refuse
    # the deep and the long bodies with 413 before anyone tried to read them.
    async with make_client(make_app(max_body_bytes=1_000_000)) as client:
        response = await client.post(
            "/v1/uploads", content=body, headers={"Content-Type": "application/json"}
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://earlyhelp.example/problems/malformed-body"
    assert problem["title"] == "Malformed request body"
    [error] = problem["errors"]
    assert (error["field"], error["code"]) == ("body", code)
    assert error["message"] == problem["detail"]
    if where is not None:
        assert where in problem["detail"]
    # Everything but the trace id, random hex that now and then holds a "777" of its own.
    answered = json.dumps({key: value for key, value in problem.items() if key != "trace_id"})
    for sent in ("Jane", "Zo", "777", "xff", "0xe9"):
        assert sent not in answered


async def test_an_application_400_keeps_its_own_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/bad-request")

    assert response.status_code == 400
    assert response.json()["type"] == "https://earlyhelp.example/problems/bad-request"


async def test_body_without_a_json_content_type_is_a_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/uploads", content=b"name=Jane", headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM
    assert "Jane" not in response.text


async def test_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json() == {
        "type": "https://earlyhelp.example/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "instance": "/v1/nowhere",
        "trace_id": response.json()["trace_id"],
    }


async def test_wrong_method_is_a_405_problem_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/referrals/7")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["allow"] == "GET"
    assert response.json()["type"] == "https://earlyhelp.example/problems/method-not-allowed"


async def test_a_raised_problem_keeps_its_status_and_detail(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/referrals/7")

    assert response.status_code == 404
    assert response.json()["detail"] == "Referral 7 does not exist."


async def test_unhandled_error_is_a_500_problem_that_leaks_nothing(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="hub.http"):
        response = await client.get("/v1/broken")

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://earlyhelp.example/problems/internal-error"
    assert len(problem["trace_id"]) == 32
    for leak in ("Jane Doe", "RuntimeError", "database", "Traceback"):
        assert leak not in response.text
    [logged] = [record for record in caplog.records if record.name == "hub.http"]
    assert logged.trace_id == problem["trace_id"]
    # The log says what failed and where, but not the exception's text: it quoted a child.
    assert logged.exc_info is None
    assert logged.getMessage() == "Unhandled error in GET /v1/broken: RuntimeError"
    # Its stack: the frames and their lines of code, then the exception's class alone.
    assert "conftest.py" in logged.stack
    assert logged.stack.splitlines()[-1] == "RuntimeError"


async def test_problem_responses_and_422_are_documented_as_problem_details(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()

    problem_ref = {"$ref": "#/components/schemas/ProblemDetails"}
    submit = schema["paths"]["/v1/referrals"]["post"]["responses"]
    assert submit["422"]["content"] == {PROBLEM: {"schema": problem_ref}}
    assert submit["400"]["content"] == {PROBLEM: {"schema": problem_ref}}
    assert submit["409"]["content"] == {PROBLEM: {"schema": problem_ref}}
    get_responses = schema["paths"]["/v1/referrals/{referral_id}"]["get"]["responses"]
    assert get_responses["404"]["content"] == {PROBLEM: {"schema": problem_ref}}
    components = schema["components"]["schemas"]
    assert {"type", "title", "status", "detail", "errors", "trace_id"} <= set(
        components["ProblemDetails"]["properties"]
    )
    assert "FieldError" in components
    assert "HTTPValidationError" not in components
    assert "HTTPValidationError" not in json.dumps(schema)


async def test_a_405_allows_every_method_the_path_offers_not_just_one_routes() -> None:
    from fastapi import APIRouter, FastAPI

    from hub.http.problems import install_problem_handlers

    router = APIRouter(prefix="/v1")
    router.add_api_route("/cases", lambda: {}, methods=["GET"])
    router.add_api_route("/cases", lambda: {}, methods=["POST"])
    app = FastAPI()
    app.include_router(router)
    install_problem_handlers(app)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.delete("/v1/cases")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
