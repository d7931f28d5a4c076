"""When each family's case records fall due under the retention schedule, and legal holds.

Case plan decides: it alone sees every case's closure and every referred child's
date of birth (`cases`, `family_referrals`). A family's records fall due the
later of: the schedule's years after its last case closed, and its youngest
child's 25th birthday (`hub.retention.case_records_due`). A family with an open
case, or an untriaged referral, is never due. A family referred but never given a
case counts from its last triage. Held families are reported apart, never as due.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, select

from caseplan.projections import cases, family_referrals
from caseplan.tables import legal_holds
from hub.contracts.dates import authority_date
from hub.retention import RetentionSchedule, case_records_due
from hub.scope import Scope


@dataclass(frozen=True)
class FamilyRetention:
    family_id: str
    due: date | None  # None: not due while a case or a referral is open
    case_ids: tuple[str, ...]
    referral_ids: tuple[str, ...]


@dataclass(frozen=True)
class Hold:
    family_id: str
    reason: str
    placed_by: str
    placed_at: datetime


def _day(instant: datetime | None) -> date | None:
    return authority_date(instant) if instant is not None else None


def family_retention(
    conn: Connection, schedule: RetentionSchedule, scope: Scope | None = None
) -> list[FamilyRetention]:
    """Every family case plan holds records of, with the day they fall due.

    `scope`: staff limited to localities see the families with a case or referral there
    (filtered in SQL); None (the nightly job) and authority-wide staff see all.
    """
    case_query = select(cases.c.family_id, cases.c.case_id, cases.c.closed_at)
    referral_query = select(
        family_referrals.c.family_id,
        family_referrals.c.referral_id,
        family_referrals.c.triaged_at,
        family_referrals.c.case_id,
        family_referrals.c.children,
    )
    if scope is not None and not scope.authority_wide:
        localities = sorted(scope.localities)
        in_scope = (
            select(cases.c.family_id)
            .where(cases.c.locality.in_(localities))
            .union(
                select(family_referrals.c.family_id).where(
                    family_referrals.c.locality.in_(localities)
                )
            )
        )
        case_query = case_query.where(cases.c.family_id.in_(in_scope))
        referral_query = referral_query.where(family_referrals.c.family_id.in_(in_scope))
    closures: dict[str, list[date | None]] = {}
    case_ids: dict[str, list[str]] = {}
    for row in conn.execute(case_query):
        closures.setdefault(row.family_id, []).append(_day(row.closed_at))
        case_ids.setdefault(row.family_id, []).append(row.case_id)
    births: dict[str, list[date | None]] = {}
    referral_ids: dict[str, list[str]] = {}
    for row in conn.execute(referral_query):
        referral_ids.setdefault(row.family_id, []).append(row.referral_id)
        births.setdefault(row.family_id, []).extend(
            date.fromisoformat(child["date_of_birth"]) if child.get("date_of_birth") else None
            for child in json.loads(row.children)
        )
        if row.case_id is None:  # a referral that opened no case closes at its triage
            closures.setdefault(row.family_id, []).append(_day(row.triaged_at))
    return [
        FamilyRetention(
            family_id=family_id,
            due=case_records_due(schedule, closures.get(family_id, []), births.get(family_id, [])),
            case_ids=tuple(sorted(case_ids.get(family_id, []))),
            referral_ids=tuple(sorted(referral_ids.get(family_id, []))),
        )
        for family_id in sorted(set(closures) | set(referral_ids))
    ]


def holds(conn: Connection) -> dict[str, Hold]:
    return {
        row.family_id: Hold(row.family_id, row.reason, row.placed_by, row.placed_at)
        for row in conn.execute(select(legal_holds))
    }


def held_resources(conn: Connection, schedule: RetentionSchedule) -> set[str]:
    """The ids of every held family, its cases and referrals: their audit rows are kept."""
    held = holds(conn)
    resources = set(held)
    for family in family_retention(conn, schedule):
        if family.family_id in held:
            resources.update(family.case_ids, family.referral_ids)
    return resources


def falling_due(
    conn: Connection, schedule: RetentionSchedule, today: date, scope: Scope | None = None
) -> tuple[list[FamilyRetention], list[tuple[FamilyRetention, Hold]]]:
    """(families due on or before `today`, not held; held families, due or not)."""
    held = holds(conn)
    due, kept = [], []
    for family in family_retention(conn, schedule, scope):
        if family.family_id in held:
            kept.append((family, held.pop(family.family_id)))
        elif family.due is not None and family.due <= today:
            due.append(family)
    if scope is None or scope.authority_wide:
        # Held before case plan holds anything of the family (a hold may come first).
        kept += [
            (FamilyRetention(family_id, None, (), ()), hold) for family_id, hold in held.items()
        ]
    return due, kept
