"""Why a command or a query says no: one exception type, rendered once as a problem.

A domain error derives from `Refusal` and names its HTTP status, problem type and
title where it is declared, so that no layer between the domain and the client
translates it again. `hub.http.problems` renders every refusal the same way; the
domain stays free of HTTP (a refusal is plain data).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class RefusedField:
    """One field at fault: where it is (`children[0].nhs_number`, `query.cursor`) and why."""

    field: str
    message: str
    code: str


class Refusal(Exception):
    """A request the hub will not carry out; nothing was stored.

    Subclasses set `status`, `problem` (the problem type's slug, appended to
    the project's problem base URI) and `title`; an instance may override them.
    """

    status: ClassVar[int] = 409
    problem: ClassVar[str | None] = None
    title: ClassVar[str | None] = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Iterable[RefusedField] = (),
        problem: str | None = None,
        title: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        resource: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(detail or "")
        # What was asked for, for the audit log of refused access (never shown to the caller).
        self.resource = resource
        self.detail = detail
        self.errors = tuple(errors)
        self.problem_slug = problem or type(self).problem
        self.problem_title = title or type(self).title
        self.extensions = dict(extensions or {})


class NotFound(Refusal):
    """No such record, or none the caller may see: the answer does not say which."""

    status = 404


class Forbidden(Refusal):
    """The caller is known but may not do this at all (whatever the record)."""

    status = 403


class Conflict(Refusal):
    status = 409


class Invalid(Refusal):
    """A request inconsistent with the records it names; every field at fault is in `errors`."""

    status = 422
    problem = "validation-error"
    title = "Invalid request"

    @classmethod
    def field(cls, field: str, message: str, code: str, detail: str | None = None) -> Invalid:
        return cls(
            detail or "The request does not fit the records it names.",
            errors=[RefusedField(field, message, code)],
        )


class StaleVersion(Conflict):
    """`If-Match` named a version of the record that is no longer the current one."""

    problem = "version-conflict"
    title = "Changed meanwhile"
