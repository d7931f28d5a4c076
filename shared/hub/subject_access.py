"""Subject access (UK GDPR article 15): what one service holds about a family, in one answer.

Every service answers for its own data at `GET /v1/subject-access/families/{family_id}`
(information governance only): its readable records in named sections, every event of
its own store about the family, and its audit log's rows about the family's records.
Intake, which alone knows people, resolves a person to their families and gathers the
four answers into one (docs/operations.md, "Subject access requests").

The helpers here read the hub's own tables; each service adds its projections.
Everything is filtered by family in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Executable, or_, select

from hub.contracts.identifiers import NhsNumber
from hub.refusals import Forbidden
from hub.scope import Scope
from hub.tables import audit_log, event_store

PERMISSION = "subject-access:read"
# The audit action of a subject access request (the records it gathered are `read`).
AUDIT_ACTION = "subject_access"
RESOURCE_TYPE = "subject_access_family"


class Section(BaseModel):
    """One kind of record the service holds about the family, as rows."""

    name: str = Field(description="A stable name, e.g. `referrals`.")
    title: str = Field(description="A heading for people.")
    description: str = Field(default="", description="What the rows are and where they come from.")
    rows: list[dict[str, Any]] = Field(default_factory=list)


class StoredEvent(BaseModel):
    """An event of the service's own store: the service's record of what happened."""

    position: int
    event_id: str
    event_type: str
    stream_id: str
    subject: str | None
    occurred_at: datetime
    actor: str | None
    data: Any


class AccessRecord(BaseModel):
    """A row of the service's audit log: who read, listed or was refused one of the records."""

    at: datetime
    actor: str
    actor_kind: str
    action: str
    resource_type: str
    resource_id: str


class FamilyRecords(BaseModel):
    """Everything one service holds about one family."""

    service: str
    family_id: UUID
    sections: list[Section]
    events: list[StoredEvent] = Field(description="Every event of this service's store about it.")
    access_log: list[AccessRecord] = Field(
        description="Who read (or was refused) the family's records in this service."
    )

    @property
    def empty(self) -> bool:
        return not self.events and not any(section.rows for section in self.sections)


class NhsNumberLookup(BaseModel):
    """A child asked about by NHS number: in a body, so that it stays out of URLs (access
    logs, proxies, browser history)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"nhs_number": "9990000034"}]}
    )

    nhs_number: NhsNumber = Field(description="The child's NHS number.")


class PersonFound(BaseModel):
    """A person a request names, as intake recorded them, and their family now."""

    person_id: UUID
    family_id: UUID
    kind: Literal["child", "household_member"]
    given_name: str
    family_name: str
    date_of_birth: date | None = None
    nhs_number: str | None = None


class SubjectAccessAnswer(BaseModel):
    """Everything the hub holds about a person: each service's records of their families."""

    requested_by: str = Field(description="The information governance officer who asked.")
    generated_at: datetime
    asked_for: dict[str, str] = Field(description="`person_id` or `nhs_number`, as asked.")
    people: list[PersonFound] = Field(description="The person's records at the front door.")
    families: list[UUID] = Field(description="The families whose records are included.")
    note_for_officer: str = Field(
        description="What the answer includes and what must be redacted before it is sent."
    )
    services: list[FamilyRecords] = Field(
        description="Each service's answer for each family: intake, allocation, caseplan, "
        "notifications."
    )


REDACTION_NOTE = (
    "The hub gathers; the officer redacts. Early help records are kept per family, so each "
    "service's answer covers the whole family of the person asked about: their brothers' and "
    "sisters' and household members' details, and what referrers and practitioners wrote. "
    "Before disclosure, remove or redact what is about other people and is not also about the "
    "requester (UK GDPR article 15(4); DPA 2018 schedule 2 part 3 paragraph 16), and consider "
    "the exemptions for social work and serious harm (DPA 2018 schedule 3). Referrers' names "
    "and contact details are third-party data unless they are professionals acting as such."
)


def check_allowed(scope: Scope) -> None:
    """A family's whole record is for information governance alone, whatever the route
    checked before (a query is reachable only through its route, and says so again)."""
    if not (scope.is_staff and scope.may(PERMISSION)):
        raise Forbidden("Subject access is answered by the authority's information governance.")


def plain(value: Any) -> Any:
    """A column value as JSON would carry it; JSON text columns decoded."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def rows_of(result: Iterable[Any], *, leave_out: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows as dicts of plain values, without the named columns (keys, secrets)."""
    return [
        {key: plain(value) for key, value in row._mapping.items() if key not in leave_out}
        for row in result
    ]


def section(
    conn: Connection,
    name: str,
    title: str,
    query: Executable,
    description: str = "",
    *,
    leave_out: Sequence[str] = (),
) -> Section:
    """One named part of a service's answer: the rows `query` gives, as plain values."""
    rows = rows_of(conn.execute(query), leave_out=leave_out)
    return Section(name=name, title=title, description=description, rows=rows)


def family_events(
    conn: Connection, family_ids: Iterable[str], stream_ids: Iterable[str] = ()
) -> list[StoredEvent]:
    """The service's own events about the families (or in the given streams, for records
    that moved to them from another family), oldest first."""
    families, streams = sorted(set(family_ids)), sorted(set(stream_ids))
    condition = event_store.c.family_id.in_(families)
    if streams:
        condition = or_(condition, event_store.c.stream_id.in_(streams))
    rows = conn.execute(select(event_store).where(condition).order_by(event_store.c.position))
    return [
        StoredEvent(
            position=row.position,
            event_id=row.event_id,
            event_type=row.event_type,
            stream_id=row.stream_id,
            subject=row.subject,
            occurred_at=row.occurred_at,
            actor=row.actor,
            data=json.loads(row.data),
        )
        for row in rows
    ]


def access_log(conn: Connection, resource_ids: Iterable[str]) -> list[AccessRecord]:
    """The audit rows about any of the records (by id), oldest first."""
    ids = sorted({str(resource_id) for resource_id in resource_ids if resource_id})
    if not ids:
        return []
    rows = conn.execute(
        select(audit_log)
        .where(audit_log.c.resource_id.in_(ids))
        .order_by(audit_log.c.at, audit_log.c.id)
    )
    return [AccessRecord.model_validate(row, from_attributes=True) for row in rows]


def ids_in(sections: Iterable[Section], *columns: str) -> set[str]:
    """The values of the named id columns in the sections' rows: the records to audit."""
    found: set[str] = set()
    for section in sections:
        for row in section.rows:
            found.update(str(row[column]) for column in columns if row.get(column))
    return found


def records(
    conn: Connection,
    service: str,
    family_id: UUID,
    sections: list[Section],
    *,
    id_columns: Sequence[str] = ("case_id", "referral_id", "person_id", "panel_id"),
    stream_ids: Iterable[str] = (),
) -> FamilyRecords:
    """One service's answer: its sections, its events, and the audit of them all."""
    events = family_events(conn, [str(family_id)], stream_ids)
    resource_ids = {str(family_id), *ids_in(sections, *id_columns)}
    resource_ids |= {event.stream_id.split("-", 1)[-1] for event in events}
    resource_ids |= {event.subject for event in events if event.subject}
    return FamilyRecords(
        service=service,
        family_id=family_id,
        sections=sections,
        events=events,
        access_log=access_log(conn, resource_ids),
    )
