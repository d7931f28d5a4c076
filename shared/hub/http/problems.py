"""Errors as RFC 9457 `application/problem+json`, for every way a request can fail.

Submitted values never appear in a problem: they may be a child's personal data.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.observability import current_trace_id
from hub.privacy import describe_error, error_stack
from hub.refusals import Refusal

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://earlyhelp.example/problems/"

_log = logging.getLogger("hub.http")

_LOCATION_PREFIXES = {"query", "path", "header", "cookie"}


def problem_type(slug: str) -> str:
    """The project's problem type URI for `slug`, e.g. `version-conflict`."""
    return PROBLEM_TYPE_BASE + slug


def _status_slug(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")
    except ValueError:
        return f"http-{status}"


def _status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class FieldError(BaseModel):
    field: str = Field(
        description="Where the invalid value is: `children[0].nhs_number` in the body, "
        "or `query.status`, `header.Idempotency-Key`, `path.case_id`."
    )
    message: str
    code: str = Field(description="Machine-readable reason, e.g. pydantic's `missing`.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, as every error response of the hub carries them."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[problem_type("validation-error")])
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="Every invalid field, when the request was invalid."
    )
    trace_id: str | None = Field(
        default=None, description="Quote it when reporting a problem: it finds the logs."
    )


class Problem(Exception):
    """Raise from anywhere in a request to answer with a problem+json response."""

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str | None = None,
        instance: str | None = None,
        errors: Iterable[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.title = title or _status_title(status)
        self.detail = detail
        self.type = type or problem_type(_status_slug(status))
        self.instance = instance
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})
        super().__init__(f"{status} {self.title}: {detail or ''}")

    @classmethod
    def not_found(cls, detail: str | None = None, **options: Any) -> Problem:
        return cls(404, detail=detail, **options)

    @classmethod
    def conflict(cls, detail: str | None = None, **options: Any) -> Problem:
        return cls(409, detail=detail, **options)

    @classmethod
    def unprocessable(
        cls, detail: str | None = None, errors: Iterable[FieldError] = (), **options: Any
    ) -> Problem:
        options.setdefault("type", problem_type("validation-error"))
        return cls(422, detail=detail, errors=errors, **options)

    @classmethod
    def forbidden(cls, detail: str | None = None, **options: Any) -> Problem:
        return cls(403, detail=detail, **options)

    @classmethod
    def unauthorized(
        cls,
        detail: str | None = None,
        *,
        scheme: str = "Bearer",
        realm: str = "earlyhelp",
        error: str | None = None,
        **options: Any,
    ) -> Problem:
        """401 with the WWW-Authenticate challenge RFC 9110 requires; `error` per RFC 6750."""
        challenge = f'{scheme} realm="{realm}"'
        if error:
            challenge += f', error="{error}"'
        headers = {**options.pop("headers", {}), "WWW-Authenticate": challenge}
        return cls(401, detail=detail, headers=headers, **options)

    @classmethod
    def too_large(cls, max_bytes: int, **options: Any) -> Problem:
        detail = f"The request body exceeds the limit of {max_bytes} bytes."
        return cls(413, detail=detail, **options)

    def body(self, *, instance: str | None = None, trace_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.instance or instance:
            body["instance"] = self.instance or instance
        if self.errors:
            body["errors"] = [error.model_dump() for error in self.errors]
        body.update(self.extensions)
        if trace_id:
            body["trace_id"] = trace_id
        return body

    def to_response(self, *, instance: str | None = None) -> Response:
        return ProblemResponse(
            self.body(instance=instance, trace_id=current_trace_id()),
            status_code=self.status,
            headers=self.headers,
        )


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, documenting each status as a ProblemDetails body."""
    return {
        status: {"model": ProblemDetails, "description": _status_title(status)}
        for status in statuses
    }


def field_path(location: Sequence[int | str]) -> str:
    """`("body", "children", 0, "nhs_number")` -> `children[0].nhs_number`."""
    head, *rest = location or ("body",)
    path = ""
    if head in _LOCATION_PREFIXES and rest:
        name = str(rest.pop(0))
        if head == "header":
            name = "-".join(part.capitalize() for part in name.split("-"))
        path = f"{head}.{name}"
    elif head != "body":
        rest.insert(0, head)
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldError]:
    """FieldErrors from pydantic error dicts, without the `input` they carry."""
    return [
        FieldError(
            field=field_path(error.get("loc", ())), message=_message(error), code=error["type"]
        )
        for error in errors
    ]


def _message(error: Mapping[str, Any]) -> str:
    # pydantic's messages name the schema's constraints, except these two,
    # which quote the submitted value or a character of it.
    if error["type"] == "union_tag_invalid":
        context = error.get("ctx", {})
        return (
            f"{context.get('discriminator', 'The tag')} should be one of "
            f"{context.get('expected_tags', 'the documented values')}"
        )
    if error["type"] == "uuid_parsing":
        return "Input should be a valid UUID"
    return str(error["msg"])


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = exc.errors()
    malformed_json = next((e for e in errors if e["type"] == "json_invalid"), None)
    if malformed_json is not None:
        reason = malformed_json.get("ctx", {}).get("error", "invalid syntax")
        position = malformed_json["loc"][-1]
        return malformed_body(
            f"The request body is not valid JSON: {reason} (character {position}).",
            "json_invalid",
        )
    invalid = field_errors(errors)
    noun = "field is" if len(invalid) == 1 else "fields are"
    return Problem.unprocessable(
        f"{len(invalid)} {noun} invalid; see `errors`.", title="Invalid request", errors=invalid
    )


# --- bodies that cannot be read: one problem, `malformed-body`, whatever the reason ---

# FastAPI's HTTPException when reading a JSON body fails other than on its syntax.
_FASTAPI_BODY_READ_FAILED = "There was an error parsing the body"


def malformed_body(detail: str, code: str) -> Problem:
    """400 `malformed-body`: `detail` says what could not be read, and where if known."""
    return Problem(
        400,
        "Malformed request body",
        detail,
        type=problem_type("malformed-body"),
        errors=[FieldError(field="body", message=detail, code=code)],
    )


def _unreadable_body(exc: HTTPException) -> Problem | None:
    """The malformed-body problem for a body FastAPI could not read, or None.

    Python's JSON reader fails on bytes that are not UTF-8, on nesting deeper than
    the interpreter's recursion limit and on integers longer than
    `sys.get_int_max_str_digits()`; FastAPI turns each into a bare 400. What the
    problem says comes from the error's type and position only, never its text,
    which quotes the bytes sent.
    """
    cause = exc.__cause__
    if exc.status_code != 400 or exc.detail != _FASTAPI_BODY_READ_FAILED or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return malformed_body(
            f"The request body is not UTF-8 text: byte {cause.start} is not valid UTF-8.",
            "body_not_utf8",
        )
    if isinstance(cause, RecursionError):
        return malformed_body(
            "The request body nests arrays or objects too deeply to be read.", "json_too_deep"
        )
    if isinstance(cause, ValueError) and "integer string conversion" in str(cause):
        return malformed_body(
            "The request body has a number too long to be read "
            f"(more than {sys.get_int_max_str_digits()} digits).",
            "json_number_too_long",
        )
    return malformed_body("The request body could not be read as JSON.", "body_unreadable")


async def _handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if isinstance(exc.body, bytes) and exc.body:
        # FastAPI leaves the body unparsed when its Content-Type is not JSON.
        problem = Problem(415, detail="Send the request body as application/json.")
        return problem.to_response(instance=request.url.path)
    return _validation_problem(exc).to_response(instance=request.url.path)


def problem_of(refusal: Refusal) -> Problem:
    """The problem a domain's refusal answers with: the one place refusals become HTTP."""
    return Problem(
        refusal.status,
        refusal.problem_title,
        refusal.detail,
        type=problem_type(refusal.problem_slug) if refusal.problem_slug else None,
        errors=[FieldError(field=e.field, message=e.message, code=e.code) for e in refusal.errors],
        extensions=refusal.extensions,
    )


async def _handle_refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return problem_of(exc).to_response(instance=request.url.path)


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.to_response(instance=request.url.path)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if (unreadable := _unreadable_body(exc)) is not None:
        return unreadable.to_response(instance=request.url.path)
    if exc.status_code in (204, 304):  # statuses that must not have a body
        return Response(status_code=exc.status_code, headers=exc.headers)
    # Starlette's default detail is just the status phrase: no need to repeat it.
    detail = exc.detail if exc.detail != _status_title(exc.status_code) else None
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path only;
        # RFC 9110 wants every method the resource offers.
        headers["Allow"] = ", ".join(_methods_of(request))
    problem = Problem(exc.status_code, detail=detail, headers=headers)
    return problem.to_response(instance=request.url.path)


def _methods_of(request: Request) -> list[str]:
    """The methods the OpenAPI document offers on the requested path."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


class UnhandledErrorMiddleware:
    """Turns an unhandled exception into a 500 problem that reveals nothing internal.

    It logs the error once, with the trace id the problem carries, and does not
    re-raise: Starlette's ServerErrorMiddleware would log it a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as exc:
            # Without a span there is no trace id; a random one still pairs the
            # response with its log line.
            trace_id = current_trace_id() or secrets.token_hex(16)
            # Not the traceback: its exception text may quote the request's values.
            _log.error(
                "Unhandled error in %s %s: %s",
                scope["method"],
                scope["path"],
                describe_error(exc),
                extra={"trace_id": trace_id, "stack": error_stack(exc)},
            )
            if response_started:
                raise
            problem = Problem(
                500,
                detail="An unexpected error occurred. Quote the trace_id when reporting it.",
                type=problem_type("internal-error"),
            )
            response = ProblemResponse(
                problem.body(instance=scope["path"], trace_id=trace_id), status_code=500
            )
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every failure of `app` with problem+json and document it in OpenAPI.

    Adds UnhandledErrorMiddleware: middleware added after this call sits
    outside it and so sees the 500 responses (metrics should).
    """
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(Refusal, _handle_refusal)
    app.add_exception_handler(HTTPException, _handle_http_exception)
    app.add_middleware(UnhandledErrorMiddleware)
    _document_problems_in_openapi(app)


_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


def _document_problems_in_openapi(app: FastAPI) -> None:
    """Make the schema say what the handlers send: ProblemDetails as problem+json.

    FastAPI documents its own 422 body (HTTPValidationError) and every
    `responses=` model as application/json; both are rewritten here.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = ProblemDetails.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.update(problem_schema.pop("$defs", {}))
        components["ProblemDetails"] = problem_schema
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                _document_operation_problems(operation)
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_operation_problems(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    # A route that documents its own 422 body (FHIR's OperationOutcome) keeps it.
    own_422 = set(responses.get("422", {}).get("content", {})) - {"application/json"}
    if not own_422 and (
        "422" in responses or "parameters" in operation or "requestBody" in operation
    ):
        responses["422"] = {
            "description": "Invalid request: every invalid field is named in `errors`.",
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
        }
    if "requestBody" in operation:
        responses.setdefault(
            "400",
            {
                "description": "Malformed request body (not UTF-8 JSON the hub can read)",
                "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
            },
        )
    for response in responses.values():
        content = response.get("content", {})
        json_content = content.get("application/json")
        if json_content and json_content.get("schema", {}).get("$ref", "").endswith(
            "/ProblemDetails"
        ):
            content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
