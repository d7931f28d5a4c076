"""Reads what the front door already holds, for the decisions in `intake.domain`.

Run inside the write transaction that appends the decision, after taking the
store's append lock, so that two referrals for the same new child cannot both
decide it is unknown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from sqlalchemy import Connection, and_, or_, select

from hub.contracts.codes import PoliceGrade
from hub.contracts.common import ChildDetails
from intake.domain import FamilyCase, FrontDoorRecords, ReferralStatus, months_before
from intake.matching import PersonRecord, normalise_name
from intake.projections import family_cases, known_people, referrals


def records_for_children(
    conn: Connection, children: Iterable[ChildDetails], now: datetime, window_months: int
) -> FrontDoorRecords:
    """Everyone who might be one of `children`, and their families' cases and held notices."""
    table = known_people
    conditions = []
    for child in children:
        if child.nhs_number:
            conditions.append(table.c.nhs_number == child.nhs_number)
        if child.upn:
            conditions.append(table.c.upn == child.upn)
        if child.date_of_birth:
            conditions.append(
                and_(
                    table.c.family_name == normalise_name(child.family_name),
                    table.c.date_of_birth == child.date_of_birth,
                )
            )
    if not conditions:
        return FrontDoorRecords()
    people = tuple(
        PersonRecord(
            person_id=UUID(row.person_id),
            family_id=UUID(row.family_id),
            given_name=row.given_name,
            family_name=row.family_name,
            date_of_birth=row.date_of_birth,
            postcode=row.postcode,
            nhs_number=row.nhs_number,
            upn=row.upn,
        )
        # One row per distinct record of a person: a child referred ten times the same
        # way is compared once, not ten times.
        for row in conn.execute(
            select(
                table.c.person_id,
                table.c.family_id,
                table.c.given_name,
                table.c.family_name,
                table.c.date_of_birth,
                table.c.postcode,
                table.c.nhs_number,
                table.c.upn,
            )
            .where(or_(*conditions))
            .distinct()
        )
    )
    families = {person.family_id for person in people}
    if not families:
        return FrontDoorRecords()
    return FrontDoorRecords(
        people=people,
        cases=_cases_of(conn, families),
        held_low_notices=_held_low_notices(conn, families, months_before(now, window_months)),
    )


def records_for_family(conn: Connection, family_id: UUID) -> FrontDoorRecords:
    """The family's cases: what joining a referral to it needs to know."""
    return FrontDoorRecords(cases=_cases_of(conn, {family_id}))


def open_case_of(conn: Connection, family_id: UUID) -> UUID | None:
    case_id = conn.execute(
        select(family_cases.c.case_id)
        .where(family_cases.c.family_id == str(family_id), family_cases.c.closed_at.is_(None))
        .order_by(family_cases.c.opened_at.desc())
        .limit(1)
    ).scalar()
    return UUID(case_id) if case_id else None


def _cases_of(conn: Connection, families: set[UUID]) -> tuple[FamilyCase, ...]:
    ids = [str(family) for family in families]
    return tuple(
        FamilyCase(UUID(row.case_id), UUID(row.family_id), row.opened_at, row.closed_at)
        for row in conn.execute(select(family_cases).where(family_cases.c.family_id.in_(ids)))
    )


def _held_low_notices(
    conn: Connection, families: set[UUID], since: datetime
) -> dict[UUID, tuple[tuple[UUID, datetime], ...]]:
    """Low police notifications held, not yet escalated, received since `since`, by family."""
    held: dict[UUID, list[tuple[UUID, datetime]]] = defaultdict(list)
    notices = conn.execute(
        select(referrals.c.family_id, referrals.c.referral_id, referrals.c.received_at).where(
            referrals.c.family_id.in_([str(family) for family in families]),
            referrals.c.status == ReferralStatus.HELD.value,
            referrals.c.police_grade == PoliceGrade.LOW.value,
            referrals.c.escalated_in.is_(None),
            referrals.c.received_at >= since,
        )
    )
    for row in notices:
        held[UUID(row.family_id)].append((UUID(row.referral_id), row.received_at))
    return {family: tuple(found) for family, found in held.items()}
