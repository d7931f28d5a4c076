"""Events of one case as case plan, allocation and intake publish them, for the sharing
tests: made from the contracts' examples (never through case plan's API)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import sqlalchemy as sa

from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import (
    AssessmentCompleted,
    CaseSteppedUp,
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    PlanReviewed,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    TeamMemberAdded,
    TeamMemberKind,
    TeamMemberRemoved,
)
from hub.contracts.codes import ConsentScope
from hub.contracts.intake import ReferralTriaged


class Case:
    """One case of a new family, opened by the triage of `received`."""

    def __init__(self, received, case_id=None) -> None:
        self.received = received
        self.family_id = received.family_id
        self.case_id = case_id or uuid4()
        self._ids = {"family_id": self.family_id, "case_id": self.case_id}

    def _of(self, model, **update):
        return model.example().model_copy(update=self._ids | update)

    def triaged(self):
        return self._of(ReferralTriaged, referral_id=self.received.referral_id, decided_at=_now())

    def member_added(self, member_id: str):
        return self._of(
            TeamMemberAdded,
            member_id=member_id,
            member_kind=TeamMemberKind.PARTNER,
            added_at=_now(),
        )

    def member_removed(self, member_id: str):
        return self._of(TeamMemberRemoved, member_id=member_id, removed_at=_now())

    def consent_recorded(self, *purposes: ConsentScope):
        return self._of(ConsentRecorded, purposes=purposes, recorded_at=_now())

    def consent_narrowed(self, *purposes: ConsentScope):
        return self._of(ConsentNarrowed, purposes=purposes, narrowed_at=_now())

    def consent_withdrawn(self):
        return self._of(ConsentWithdrawn, withdrawn_at=_now())

    def override_recorded(self, review_date: date | None = None):
        return self._of(
            SafeguardingOverrideRecorded,
            decided_at=_now(),
            review_date=review_date or date.today() + timedelta(days=30),
        )

    def override_ended(self):
        return self._of(SafeguardingOverrideEnded, ended_at=_now())

    def school_recorded(self, school_id: str):
        return self._of(
            ChildSchoolRecorded, person_id=uuid4(), school_id=school_id, recorded_at=_now()
        )

    def allocated(self):
        return self._of(CaseAllocated, allocated_at=_now())

    def assessed(self):
        return self._of(AssessmentCompleted, completed_at=_now())

    def reviewed(self):
        return self._of(PlanReviewed)

    def stepped_up(self):
        return self._of(CaseSteppedUp, stepped_up_at=_now())


def _now() -> datetime:
    return datetime.now(UTC)


def rows(database_url: str, sql: str, **params) -> list:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).all()
    finally:
        engine.dispose()


def projected(database_url: str, table: str, case_id) -> int:
    """How many rows `table` of the read model holds for the case: facts consumed."""
    return rows(
        database_url, f"SELECT count(*) FROM {table} WHERE case_id = :case", case=str(case_id)
    )[0][0]


def open_deliveries(database_url: str) -> int:
    return rows(
        database_url, "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'retrying')"
    )[0][0]
