"""Case plan's write side: each command a function of a `CommandContext`, no HTTP.

Every command on a case first finds it among those the caller may work (a
missing case never passes), takes the case as its events folded it (the
projection's), checks `If-Match`, decides with the pure domain and appends
after the version it decided on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from sqlalchemy import delete

from caseplan import domain, queries
from caseplan.projections import assessment_drafts, stored_case
from caseplan.schemas import (
    ActionSubmission,
    AssessmentDraftView,
    AssessmentRecorded,
    AssessmentSubmission,
    ChildSchoolSubmission,
    ClosureSubmission,
    ConsentNarrowing,
    ConsentSubmission,
    ConsentWithdrawal,
    LegalHoldSubmission,
    LegalHoldView,
    OutcomeSubmission,
    OverrideEnding,
    OverrideSubmission,
    Recorded,
    ReviewSubmission,
    ServiceStartSubmission,
    StepDownSubmission,
    StepUpSubmission,
    TeamMemberRemoval,
    TeamMemberSubmission,
)
from caseplan.tables import legal_holds
from hub.auth import Identities
from hub.commands import CommandContext, CommandResult
from hub.contracts.base import EventData
from hub.contracts.codes import PartnerOrganisationType
from hub.refusals import Forbidden, Invalid, NotFound, Refusal, StaleVersion
from hub.sql import upsert

# Step-downs get case ids derived from the social care reference, so that the same
# family handed down twice under one reference is one case (the second is a 409).
_STEP_DOWN_NAMESPACE = uuid5(NAMESPACE_URL, "https://earlyhelp.example/step-downs")


def case_changed(case_id: UUID) -> Callable[[int], Refusal]:
    """The refusal of a command whose `If-Match` names an earlier version of the case."""

    def refusal(version: int) -> Refusal:
        return StaleVersion(
            f"Case {case_id} changed after you read it (it is now version {version}); "
            "read it again and decide whether your change still stands.",
            problem="case-changed",
            title="Case changed",
        )

    return refusal


def load(ctx: CommandContext, case_id: UUID) -> domain.Case | None:
    """The case as the `cases` projection folded it: allocation's events and the own
    stream, each applied once, the own ones in the transaction that appended them."""
    return stored_case(ctx.conn, case_id)


def _decide(
    ctx: CommandContext,
    case_id: UUID,
    decide: Callable[[domain.Case | None], list[EventData]],
    access: Callable[..., object] = queries.workable_case,
) -> list:
    """The case worked by the caller, folded, decided on, appended after that version.

    `access` finds the case among those the caller may change (by default those they
    work). A concurrent command on the same case moves the stream on first: the append
    then fails with ConcurrencyConflict, which the runner answers 409.
    """
    access(ctx.conn, ctx.scope, case_id)
    current = load(ctx, case_id)
    if current is not None:
        ctx.expect(current.version)
    events = decide(current)
    ctx.append(domain.stream_id(case_id), current.version if current else 0, events)
    return events


def _recorded(event: EventData, status: int = 201) -> CommandResult:
    body = Recorded(
        case_id=event.case_id,
        event_type=event.event_type,
        event=json.loads(event.model_dump_json()),
    )
    return CommandResult(status, body, {"Location": f"/v1/cases/{event.case_id}"})


# --- the assessment -------------------------------------------------------------------


def submit_assessment(
    ctx: CommandContext, case_id: UUID, submission: AssessmentSubmission
) -> CommandResult:
    """A draft is saved however incomplete (200); a complete one is recorded (201)."""
    draft = queries.draft_of(submission)
    if not submission.complete:
        queries.workable_case(ctx.conn, ctx.scope, case_id)
        if load(ctx, case_id) is None:
            raise queries.no_case(case_id)
        return CommandResult(200, _save_draft(ctx, case_id, draft))
    command = domain.CompleteAssessment(
        case_id=case_id,
        assessment_id=uuid4(),
        draft=draft,
        completed_by=ctx.scope.subject,
        completed_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.complete_assessment(c, command))
    ctx.conn.execute(assessment_drafts.delete().where(assessment_drafts.c.case_id == str(case_id)))
    recorded = AssessmentRecorded(
        case_id=case_id,
        assessment_id=event.assessment_id,
        completed_at=event.completed_at,
        needs=[json.loads(need.model_dump_json()) for need in event.needs],
    )
    return CommandResult(201, recorded, {"Location": f"/v1/cases/{case_id}"})


def _save_draft(
    ctx: CommandContext, case_id: UUID, draft: domain.AssessmentDraft
) -> AssessmentDraftView:
    # Needs keep the ids given now, so that a later save or completion refers to them.
    saved = AssessmentSubmission(
        factors=list(draft.factors),
        needs=[need.model_dump() for need in draft.needs],
        recommended_level_of_need=draft.recommended_level_of_need,
        people=list(draft.people),
        views=draft.views,
    )
    values = {"draft": saved.model_dump_json(), "saved_by": ctx.scope.subject, "saved_at": ctx.now}
    updated = ctx.conn.execute(
        assessment_drafts.update()
        .where(assessment_drafts.c.case_id == str(case_id))
        .values(**values)
    )
    if updated.rowcount == 0:
        ctx.conn.execute(assessment_drafts.insert().values(case_id=str(case_id), **values))
    return queries.draft_view(case_id, saved, ctx.scope.subject, ctx.now)


# --- the plan -------------------------------------------------------------------------


def add_action(ctx: CommandContext, case_id: UUID, submission: ActionSubmission) -> CommandResult:
    command = domain.AddAction(
        case_id=case_id,
        action_id=uuid4(),
        need_id=submission.need_id,
        what=submission.what,
        who=submission.who,
        by_when=submission.by_when,
        added_by=ctx.scope.subject,
        added_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.add_action(c, command))
    return _recorded(event)


def agree_outcome(
    ctx: CommandContext, case_id: UUID, submission: OutcomeSubmission
) -> CommandResult:
    command = domain.AgreeOutcome(
        case_id=case_id,
        need_id=submission.need_id,
        statement=submission.statement,
        measure=submission.measure,
        agreed_by=ctx.scope.subject,
        agreed_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.agree_outcome(c, command))
    return _recorded(event)


def review_plan(
    ctx: CommandContext, case_id: UUID, submission: ReviewSubmission, max_interval_months: int
) -> CommandResult:
    command = domain.ReviewPlan(
        case_id=case_id,
        review_id=uuid4(),
        progress=tuple(submission.progress),
        next_review_date=submission.next_review_date,
        reviewed_by=ctx.scope.subject,
        reviewed_at=ctx.now,
        max_interval_months=max_interval_months,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.review(c, command))
    return _recorded(event)


# --- across the threshold, and closure ------------------------------------------------


def step_up(ctx: CommandContext, case_id: UUID, submission: StepUpSubmission) -> CommandResult:
    command = domain.StepUp(
        case_id=case_id,
        reason=submission.reason,
        factors=tuple(submission.factors),
        social_care_contact=submission.social_care_contact,
        decided_by=ctx.scope.subject,
        stepped_up_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.step_up(c, command))
    return _recorded(event)


def step_down(ctx: CommandContext, submission: StepDownSubmission) -> CommandResult:
    """Children's social care hands a family down: a case awaiting allocation."""
    scope = ctx.scope
    if scope.kind != "partner" or scope.organisation_type != PartnerOrganisationType.SOCIAL_CARE:
        raise Forbidden("Only children's social care may step a family down.")
    case_id = uuid5(_STEP_DOWN_NAMESPACE, f"{scope.subject}:{submission.social_care_reference}")
    family_id = uuid4()
    if submission.early_help_case_id is not None:
        earlier = load(ctx, submission.early_help_case_id)
        if earlier is None:
            raise Invalid.field(
                "early_help_case_id",
                "no such early help case",
                "unknown",
                "The early help case is not known.",
            )
        family_id = earlier.family_id
    command = domain.StepDown(
        case_id=case_id,
        family_id=family_id,
        social_care_reference=submission.social_care_reference,
        children=tuple(submission.children),
        reason=submission.reason,
        social_care_summary=submission.social_care_summary,
        locality=submission.locality,
        stepped_down_at=ctx.now,
    )
    current = load(ctx, case_id)
    events = domain.step_down(current, command)
    ctx.append(domain.stream_id(case_id), current.version if current else 0, events)
    return _recorded(events[0])


def close_case(ctx: CommandContext, case_id: UUID, submission: ClosureSubmission) -> CommandResult:
    command = domain.CloseCase(
        case_id=case_id,
        reason=submission.reason,
        reason_detail=submission.reason_detail,
        achieved=tuple((item.need_id, item.achieved) for item in submission.outcomes),
        closed_by=ctx.scope.subject,
        closed_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.close(c, command))
    return _recorded(event)


# --- the team around the family -------------------------------------------------------
# Changed by the case's lead professional and their managers only.


def add_team_member(
    ctx: CommandContext, case_id: UUID, submission: TeamMemberSubmission, directory: Identities
) -> CommandResult:
    command = domain.AddTeamMember(
        case_id=case_id,
        member_id=submission.member_id,
        member_kind=queries.member_kind(ctx.conn, directory, submission.member_id),
        role=submission.role,
        added_by=ctx.scope.subject,
        added_at=ctx.now,
    )
    [event] = _decide(
        ctx, case_id, lambda c: domain.add_team_member(c, command), queries.managed_case
    )
    return _recorded(event)


def remove_team_member(
    ctx: CommandContext, case_id: UUID, member_id: str, submission: TeamMemberRemoval
) -> CommandResult:
    command = domain.RemoveTeamMember(
        case_id=case_id,
        member_id=member_id,
        reason=submission.reason,
        removed_by=ctx.scope.subject,
        removed_at=ctx.now,
    )
    [event] = _decide(
        ctx, case_id, lambda c: domain.remove_team_member(c, command), queries.managed_case
    )
    return _recorded(event)


# --- consent and safeguarding overrides -----------------------------------------------
# Consent is recorded by anyone who works the case; an override (sharing without consent)
# is decided by the lead professional or their manager.


def record_consent(
    ctx: CommandContext, case_id: UUID, submission: ConsentSubmission
) -> CommandResult:
    command = domain.RecordConsent(
        case_id=case_id,
        given_by=submission.given_by,
        given_at=submission.given_at,
        purposes=tuple(submission.purposes),
        recorded_by=ctx.scope.subject,
        recorded_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.record_consent(c, command))
    return _recorded(event)


def narrow_consent(
    ctx: CommandContext, case_id: UUID, submission: ConsentNarrowing
) -> CommandResult:
    command = domain.NarrowConsent(
        case_id=case_id,
        purposes=tuple(submission.purposes),
        reason=submission.reason,
        opening=queries.opening_consent(ctx.conn, case_id),
        narrowed_by=ctx.scope.subject,
        narrowed_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.narrow_consent(c, command))
    return _recorded(event)


def withdraw_consent(
    ctx: CommandContext, case_id: UUID, submission: ConsentWithdrawal
) -> CommandResult:
    command = domain.WithdrawConsent(
        case_id=case_id,
        reason=submission.reason,
        opening=queries.opening_consent(ctx.conn, case_id),
        withdrawn_by=ctx.scope.subject,
        withdrawn_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.withdraw_consent(c, command))
    return _recorded(event)


def record_override(
    ctx: CommandContext, case_id: UUID, submission: OverrideSubmission
) -> CommandResult:
    command = domain.RecordOverride(
        case_id=case_id,
        reason=submission.reason,
        review_date=submission.review_date,
        decided_by=ctx.scope.subject,
        decided_at=ctx.now,
    )
    [event] = _decide(
        ctx, case_id, lambda c: domain.record_override(c, command), queries.managed_case
    )
    return _recorded(event)


def end_override(ctx: CommandContext, case_id: UUID, submission: OverrideEnding) -> CommandResult:
    command = domain.EndOverride(
        case_id=case_id, reason=submission.reason, ended_by=ctx.scope.subject, ended_at=ctx.now
    )
    [event] = _decide(ctx, case_id, lambda c: domain.end_override(c, command), queries.managed_case)
    return _recorded(event)


# --- a child's school -----------------------------------------------------------------


def record_child_school(
    ctx: CommandContext, case_id: UUID, submission: ChildSchoolSubmission, directory: Identities
) -> CommandResult:
    def decide(case: domain.Case | None) -> list[EventData]:
        children = (
            frozenset()
            if case is None
            else queries.children_of_family(ctx.conn, case.family_id, case_id)
        )
        command = domain.RecordChildSchool(
            case_id=case_id,
            person_id=submission.person_id,
            school_id=submission.school_id,
            children=children,
            school_known=queries.is_school(directory, submission.school_id),
            recorded_by=ctx.scope.subject,
            recorded_at=ctx.now,
        )
        return domain.record_child_school(case, command)

    [event] = _decide(ctx, case_id, decide)
    return _recorded(event)


# --- a service of the package started (issue 21) ---------------------------------------


def record_service_start(
    ctx: CommandContext, case_id: UUID, submission: ServiceStartSubmission
) -> CommandResult:
    command = domain.RecordServiceStart(
        case_id=case_id,
        provider_id=submission.provider_id,
        service=submission.service,
        started_on=submission.started_on,
        recorded_by=ctx.scope.subject,
        recorded_at=ctx.now,
    )
    [event] = _decide(ctx, case_id, lambda c: domain.record_service_start(c, command))
    return _recorded(event)


# --- legal holds (issue 16) -------------------------------------------------------------
# Information governance keeps a family's records from disposal under the retention
# schedule. A hold is a decision about the schedule, not a fact of the case: kept in
# `legal_holds` (no replay drops it), each change written to the audit log.


def place_legal_hold(
    ctx: CommandContext, family_id: UUID, submission: LegalHoldSubmission
) -> CommandResult:
    """Hold the family's records (a second hold replaces the first's reason)."""
    hold = {
        "family_id": str(family_id),
        "reason": submission.reason,
        "placed_by": ctx.scope.subject,
        "placed_at": ctx.now,
    }
    upsert(ctx.conn, legal_holds, hold, key=("family_id",))
    ctx.audit("legal_hold_placed", "family", str(family_id))
    return CommandResult(
        200,
        LegalHoldView.model_validate(hold),
        {"Location": f"/v1/families/{family_id}/legal-hold"},
    )


def lift_legal_hold(ctx: CommandContext, family_id: UUID) -> CommandResult:
    lifted = ctx.conn.execute(
        delete(legal_holds).where(legal_holds.c.family_id == str(family_id))
    ).rowcount
    if not lifted:
        raise NotFound(f"No legal hold on family {family_id}.")
    ctx.audit("legal_hold_lifted", "family", str(family_id))
    return CommandResult(204, None)
