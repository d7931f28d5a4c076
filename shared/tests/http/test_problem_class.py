"""The Problem exception and the pydantic-error translation, without HTTP."""

from __future__ import annotations

import pytest

from hub.http import FieldError, Problem
from hub.http.problems import field_errors, field_path


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (("body", "children", 0, "nhs_number"), "children[0].nhs_number"),
        (("body", "concern"), "concern"),
        (("body",), "body"),
        (("body", 3), "[3]"),
        (("query", "status"), "query.status"),
        (("header", "idempotency-key"), "header.Idempotency-Key"),
        (("path", "case_id"), "path.case_id"),
        (("query", "ids", 2), "query.ids[2]"),
    ],
)
def test_field_path(location: tuple[str | int, ...], path: str) -> None:
    assert field_path(location) == path


def test_field_errors_drop_the_input_and_messages_that_quote_it() -> None:
    errors = field_errors(
        [
            {
                "type": "union_tag_invalid",
                "loc": ("body", "kind"),
                "msg": "Input tag 'Jane Doe' found using 'kind' does not match any of the "
                "expected tags: 'a', 'b'",
                "input": "Jane Doe",
                "ctx": {"discriminator": "'kind'", "tag": "Jane Doe", "expected_tags": "'a', 'b'"},
            },
            {
                "type": "uuid_parsing",
                "loc": ("path", "case_id"),
                "msg": "Input should be a valid UUID, invalid character: found `J` at 0",
                "input": "Jane",
            },
        ]
    )

    assert errors == [
        FieldError(
            field="kind", message="'kind' should be one of 'a', 'b'", code="union_tag_invalid"
        ),
        FieldError(
            field="path.case_id", message="Input should be a valid UUID", code="uuid_parsing"
        ),
    ]


def test_unauthorized_carries_a_challenge() -> None:
    problem = Problem.unauthorized("Token expired.", error="invalid_token")

    assert problem.status == 401
    assert problem.headers["WWW-Authenticate"] == 'Bearer realm="earlyhelp", error="invalid_token"'


def test_constructors_set_status_and_a_project_type() -> None:
    assert [
        (p.status, p.type)
        for p in (
            Problem.not_found(),
            Problem.conflict("Stale version."),
            Problem.forbidden(),
            Problem.too_large(10),
            Problem.unprocessable(errors=[FieldError(field="a", message="m", code="c")]),
        )
    ] == [
        (404, "https://earlyhelp.example/problems/not-found"),
        (409, "https://earlyhelp.example/problems/conflict"),
        (403, "https://earlyhelp.example/problems/forbidden"),
        (413, "https://earlyhelp.example/problems/request-entity-too-large"),
        (422, "https://earlyhelp.example/problems/validation-error"),
    ]


def test_extensions_appear_in_the_body() -> None:
    problem = Problem.conflict("Stale version.", extensions={"current_version": 4})

    assert problem.body(instance="/v1/cases/1") == {
        "type": "https://earlyhelp.example/problems/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Stale version.",
        "instance": "/v1/cases/1",
        "current_version": 4,
    }
