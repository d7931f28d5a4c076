"""The caller's `Scope` as a FastAPI dependency: permissions checked, refusals audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hub.audit import REFUSED, record_access
from hub.auth import Principal, authenticated
from hub.refusals import Forbidden
from hub.scope import Scope


def caller(*needed: str, kind: str | None = None, why: str = ""):
    """A dependency giving the caller's Scope when the token carries every scope in `needed`.

    With `kind` ("staff" or "partner"), callers of the other kind are refused with
    `why`, whatever scopes their client was given. Every refusal is audited.
    """

    async def check(
        request: Request, principal: Annotated[Principal, Depends(authenticated)]
    ) -> Scope:
        scope = Scope.of(principal)
        missing = [permission for permission in needed if not scope.may(permission)]
        refusal = None
        if missing:
            refusal = Forbidden(
                f"This needs the scope(s): {' '.join(missing)}.",
                extensions={"required_scopes": list(needed)},
            )
        elif kind is not None and scope.kind != kind:
            refusal = Forbidden(why)
        if refusal is not None:
            runtime = request.app.state.runtime
            where = ("request", f"{request.method} {request.url.path}")
            await record_access(runtime, scope, REFUSED, [where])
            raise refusal
        return scope

    return check
