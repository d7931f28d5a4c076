"""Reads what the front door already holds, for the decisions in `intake.domain`.

Run inside the write transaction that appends the decision, after taking the
store's append lock, so that two referrals for the same new child cannot both
decide it is unknown.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from uuid import UUID

from sqlalchemy import Connection, Select, and_, bindparam, or_, select

from hub.contracts.codes import PoliceGrade
from hub.contracts.common import ChildDetails
from intake.domain import FamilyCase, FrontDoorRecords, ReferralStatus, months_before
from intake.matching import PersonRecord, normalise_name
from intake.projections import child_schools, family_cases, known_people, referrals

_CANDIDATE_COLUMNS = (
    known_people.c.person_id,
    known_people.c.family_id,
    known_people.c.given_name,
    known_people.c.family_name,
    known_people.c.date_of_birth,
    known_people.c.postcode,
    known_people.c.nhs_number,
    known_people.c.upn,
)


@lru_cache(maxsize=64)
def _candidates(nhs_numbers: int, upns: int, births: int) -> Select:
    """The candidates query for this many identifiers, built once per shape.

    Building the statement per referral cost more than running it; with bound
    parameters it is compiled once, and each test stays a plain equality that
    the indexes serve (name and date of birth together on `ix_known_people_born`).
    """
    people = known_people.c
    conditions = [
        *(people.nhs_number == bindparam(f"nhs_{i}") for i in range(nhs_numbers)),
        *(people.upn == bindparam(f"upn_{i}") for i in range(upns)),
        *(
            and_(
                people.family_name == bindparam(f"family_name_{i}"),
                people.date_of_birth == bindparam(f"born_{i}"),
            )
            for i in range(births)
        ),
    ]
    # One row per distinct record of a person: a child referred ten times the same
    # way is compared once, not ten times.
    return select(*_CANDIDATE_COLUMNS).where(or_(*conditions)).distinct()


def records_for_children(
    conn: Connection, children: Iterable[ChildDetails], now: datetime, window_months: int
) -> FrontDoorRecords:
    """Everyone who might be one of `children`, and their families' cases and held notices."""
    children = list(children)
    nhs_numbers = [child.nhs_number for child in children if child.nhs_number]
    upns = [child.upn for child in children if child.upn]
    born = [child for child in children if child.date_of_birth]
    if not (nhs_numbers or upns or born):
        return FrontDoorRecords()
    values = {
        **{f"nhs_{i}": number for i, number in enumerate(nhs_numbers)},
        **{f"upn_{i}": upn for i, upn in enumerate(upns)},
        **{f"family_name_{i}": normalise_name(child.family_name) for i, child in enumerate(born)},
        **{f"born_{i}": child.date_of_birth for i, child in enumerate(born)},
    }
    rows = conn.execute(_candidates(len(nhs_numbers), len(upns), len(born)), values)
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
        for row in rows
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


def schools_of_children(conn: Connection, person_ids: Iterable[UUID]) -> dict[UUID, str]:
    """The school staff last recorded for each child the hub knows, by person id."""
    ids = [str(person_id) for person_id in person_ids]
    rows = conn.execute(
        select(child_schools.c.person_id, child_schools.c.school_id).where(
            child_schools.c.person_id.in_(ids)
        )
    )
    return {UUID(row.person_id): row.school_id for row in rows}
