"""The operators' dead-letter API, on every service that consumes: list, show, redrive.

The same operations as `earlyhelp dlq`, for staff holding the operator role
(scopes `dead-letters:read` and `dead-letters:redrive`). A record is described
by where it came from and why it failed, never by its data.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from hub.consumer import InfrastructureUnavailable, error_name, is_transient
from hub.dlq import DeadLetter, DeadLetters, Outcome, Status, UnknownDeadLetter
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.refusals import Invalid, NotFound, Refusal
from hub.scope import Scope

router = APIRouter(tags=["operations"])

DeadLetterId = Annotated[
    str,
    Path(
        description="`<dlq topic>:<partition>:<offset>`, as the list gives it.",
        pattern=r"^[A-Za-z0-9._-]+:\d+:\d+$",
        max_length=300,
    ),
]


class DeadLetterOut(BaseModel):
    id: str = Field(description="`<dlq topic>:<partition>:<offset>`.")
    event_id: str | None = Field(description="The CloudEvent id; none when undecodable.")
    event_type: str | None
    subject: str | None = Field(description="The referral or case the event is about.")
    original_topic: str
    original_partition: int
    original_offset: int
    reason: str = Field(description="Why the consumer gave up on it.")
    attempts: int
    failed_at: str | None
    status: Status = Field(
        description="`applied` once every projection that follows the event has it "
        "(after a redrive, a rebuild or a later copy); `undecodable` when it cannot be."
    )


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None, min_length=1, max_length=1000, description="The records to send back."
    )
    all: bool = Field(default=False, description="Send back every record of this service.")

    @model_validator(mode="after")
    def _one_choice(self) -> "RedriveRequest":
        if (self.ids is None) == (not self.all):
            raise ValueError("give either ids or all: true")
        return self


class RedriveResult(BaseModel):
    id: str
    event_id: str | None
    outcome: Outcome


class RedriveResponse(BaseModel):
    results: list[RedriveResult]


class DependencyUnavailable(Refusal):
    """The database or the broker is away: try again when the service is ready."""

    status = 503
    problem = "dependency-unavailable"
    title = "Database or broker unavailable"


_ONLY_OPERATORS = "Only the hub's operators may handle dead letters."
Reader = Annotated[Scope, Depends(caller("dead-letters:read", kind="staff", why=_ONLY_OPERATORS))]
Redriver = Annotated[
    Scope, Depends(caller("dead-letters:redrive", kind="staff", why=_ONLY_OPERATORS))
]


def _dead_letters(request: Request) -> DeadLetters:
    runtime = request.app.state.runtime
    return DeadLetters(
        runtime.settings,
        runtime.db,
        runtime.definition.projections,
        runtime.definition.consumes,
    )


def _described(letters: list[DeadLetter], dead_letters: DeadLetters) -> list[DeadLetterOut]:
    statuses = dead_letters.statuses(letters)
    return [
        DeadLetterOut(
            id=letter.id,
            event_id=letter.event_id,
            event_type=letter.event_type,
            subject=letter.subject,
            original_topic=letter.original_topic,
            original_partition=letter.original_partition,
            original_offset=letter.original_offset,
            reason=letter.reason,
            attempts=letter.attempts,
            failed_at=letter.failed_at,
            status=statuses[letter.id],
        )
        for letter in letters
    ]


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """The database or broker away: a 503 naming the error's class, not a 500."""
    try:
        yield
    except InfrastructureUnavailable as exc:
        raise _unavailable(str(exc)) from exc
    except Exception as exc:
        if is_transient(exc):
            raise _unavailable(error_name(exc)) from exc
        raise


def _unavailable(error: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"The dead letters cannot be handled now ({error}); nothing more was redriven. "
        "Try again when /readyz is ready."
    )


@router.get("/v1/dead-letters", responses=problem_responses(401, 403, 503))
def list_dead_letters(
    request: Request,
    _caller: Reader,
) -> DeadLetterList:
    """Every record this service's consumer dead-lettered, with the reason and its status."""
    dead_letters = _dead_letters(request)
    with _unavailable_as_503():
        return DeadLetterList(items=_described(dead_letters.read(), dead_letters))


@router.get(
    "/v1/dead-letters/{dead_letter_id}", responses=problem_responses(401, 403, 404, 422, 503)
)
def show_dead_letter(
    request: Request,
    dead_letter_id: DeadLetterId,
    _caller: Reader,
) -> DeadLetterOut:
    """One dead-lettered record, without its data."""
    dead_letters = _dead_letters(request)
    with _unavailable_as_503():
        letters = [letter for letter in dead_letters.read() if letter.id == dead_letter_id]
        described = _described(letters, dead_letters)
    if not described:
        raise NotFound("This service has no dead-lettered record with that id.")
    return described[0]


# Not /v1/dead-letters/redrive: a GET there would be taken for a record's id.
@router.post("/v1/dead-letter-redrives", responses=problem_responses(401, 403, 422, 503))
async def redrive_dead_letters(
    request: Request,
    body: RedriveRequest,
    _caller: Redriver,
) -> RedriveResponse:
    """Send the chosen records, or all, back through this service's consumer, each event once.

    Applied through the inbox as usual: an event already applied has no second
    effect, and a record that fails again is dead-lettered again.
    """
    dead_letters = _dead_letters(request)
    try:
        with _unavailable_as_503():
            results = await run_in_threadpool(dead_letters.redrive, None if body.all else body.ids)
    except UnknownDeadLetter as exc:
        raise Invalid.field(
            "ids",
            f"unknown: {exc}",
            "unknown",
            "Some ids name no dead-lettered record of this service; nothing was redriven.",
        ) from exc
    return RedriveResponse(
        results=[RedriveResult(id=r.id, event_id=r.event_id, outcome=r.outcome) for r in results]
    )
