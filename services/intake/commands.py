"""The front door's write side: each command a function of a `CommandContext`, no HTTP.

A referral's decisions load its stream, decide with the pure domain and append
after the version decided on; the domain's refusals answer for themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from hub.commands import CommandContext, CommandResult
from hub.contracts.base import EventData
from hub.contracts.codes import PartnerOrganisationType, PoliceGrade, ReferralSource
from hub.contracts.common import Child, ChildDetails, HouseholdMember, Referrer
from hub.contracts.intake import EncompassChild, ReferralReceived
from hub.refusals import Forbidden, Invalid
from hub.scope import Scope
from intake import consultations, domain, encompass, queries
from intake.records import (
    open_case_of,
    records_for_children,
    records_for_family,
    schools_of_children,
)
from intake.schemas import (
    AdviceSubmission,
    ConsultationAccepted,
    ConsultationSubmission,
    EncompassNoticeReceipt,
    MatchDecision,
    MatchingRecorded,
    NoticeAcknowledged,
    PoliceNotificationAccepted,
    PoliceNotificationSubmission,
    ReferralAccepted,
    ReferralSubmission,
    TriageDecision,
    TriageOutcome,
    TriageRecorded,
    UnlinkRequest,
    WithdrawalOutcome,
    WithdrawalRecorded,
    WithdrawalRequest,
)
from intake.settings import IntakeSettings


def receive_referral(
    ctx: CommandContext, submission: ReferralSubmission, settings: IntakeSettings
) -> CommandResult:
    """The referral, matched to the people the hub knows, received or held."""
    accepted = _receive(ctx, submission, settings, uuid4())
    return CommandResult(202, accepted, {"Location": f"/v1/referrals/{accepted.referral_id}"})


def _receive(
    ctx: CommandContext, submission: ReferralSubmission, settings: IntakeSettings, referral_id: UUID
) -> ReferralAccepted:
    referrer = _referrer_of(submission.referrer, ctx.scope, "referrer")
    ctx.uow.serialise_appends()
    records = records_for_children(
        ctx.conn, submission.children, ctx.now, settings.escalation_window_months
    )
    command = _command_from(submission, referral_id, referrer, ctx.now, records, settings)
    received, *_ = events = domain.receive(None, command)
    ctx.append(domain.stream_id(command.referral_id), 0, events)
    return ReferralAccepted(
        referral_id=command.referral_id,
        status=(
            domain.ReferralStatus.HELD
            if received.held_for_information
            else domain.ReferralStatus.RECEIVED
        ),
        received_at=command.received_at,
    )


def receive_police_notification(
    ctx: CommandContext, submission: PoliceNotificationSubmission, settings: IntakeSettings
) -> CommandResult:
    """A police referral, and for a domestic abuse incident one Encompass notice per child.

    Without `referral_requested` the notification is held as a low one on the family's
    record (cumulative concern); with it, the front door triages it at the police grade.
    """
    scope = ctx.scope
    if scope.kind != "partner" or scope.organisation_type != PartnerOrganisationType.POLICE:
        raise Forbidden("Only a police force's system can send police notifications.")
    referrer = _referrer_of(submission.referrer, scope, "referrer")
    children = [
        ChildDetails(
            **child.model_dump(
                exclude={"present", "voice_of_child", "school_urn", "school_dfe_number"}
            )
        )
        for child in submission.children
    ]
    ctx.uow.serialise_appends()
    records = records_for_children(ctx.conn, children, ctx.now, settings.escalation_window_months)
    command = domain.ReceiveReferral(
        referral_id=uuid4(),
        family_id=uuid4(),
        received_at=ctx.now,
        referral_source=ReferralSource.POLICE,
        referrer=referrer,
        partner_reference=submission.police_reference,
        urgency=submission.urgency,
        children=tuple(Child(person_id=uuid4(), **child.model_dump()) for child in children),
        household_members=tuple(
            HouseholdMember(person_id=uuid4(), **member.model_dump())
            for member in submission.household_members
        ),
        concerns=submission.concerns,
        consent=submission.consent,
        safeguarding_override=submission.safeguarding_override,
        police_grade=(
            submission.police_grade if submission.referral_requested else PoliceGrade.LOW
        ),
        records=records,
        rules=settings.front_door_rules(),
    )
    events = domain.receive(None, command)
    received = events[0]
    assert isinstance(received, ReferralReceived)
    ctx.append(domain.stream_id(command.referral_id), 0, events)
    receipts = []
    if submission.domestic_abuse:
        notices = encompass.issue(
            _notices_command(ctx, submission, received, settings), settings.school_calendar()
        )
        for notice_id, notice_events in notices:
            ctx.append(encompass.stream_id(notice_id), 0, notice_events)
            receipts.append(
                EncompassNoticeReceipt(notice_id=notice_id, due_by=notice_events[0].due_by)
            )
    accepted = PoliceNotificationAccepted(
        referral_id=command.referral_id,
        status=(
            domain.ReferralStatus.HELD
            if received.held_for_information
            else domain.ReferralStatus.RECEIVED
        ),
        received_at=command.received_at,
        notices=receipts,
    )
    return CommandResult(202, accepted, {"Location": f"/v1/referrals/{command.referral_id}"})


def _notices_command(
    ctx: CommandContext,
    submission: PoliceNotificationSubmission,
    received: ReferralReceived,
    settings: IntakeSettings,
) -> encompass.IssueNotices:
    """Each child as matched, with the school police named and the one staff recorded."""
    registry = settings.schools()
    recorded = schools_of_children(ctx.conn, [child.person_id for child in received.children])
    children = tuple(
        encompass.NoticeChild(
            child=EncompassChild(
                person_id=child.person_id,
                given_name=child.given_name,
                family_name=child.family_name,
                date_of_birth=child.date_of_birth,
                present=given.present,
                voice_of_child=given.voice_of_child,
            ),
            school=encompass.choose_school(
                registry.find(given.school_urn, given.school_dfe_number),
                given.school_urn,
                recorded.get(child.person_id),
            ),
        )
        for given, child in zip(submission.children, received.children, strict=True)
    )
    return encompass.IssueNotices(
        referral_id=received.referral_id,
        family_id=received.family_id,
        police_force=ctx.scope.organisation,
        police_reference=submission.police_reference,
        incident_at=submission.incident_at,
        location_type=submission.location_type,
        domestic_abuse=submission.domestic_abuse,
        children=children,
        issued_at=ctx.now,
    )


def acknowledge_notice(ctx: CommandContext, notice_id: UUID) -> CommandResult:
    """The notice's own school acknowledges it, or front-door staff record that they told
    the school by telephone (again: the first acknowledgement stands)."""
    scope = ctx.scope
    school = scope.kind == "partner" and scope.organisation_type == PartnerOrganisationType.SCHOOL
    front_door = scope.is_staff and scope.may("referrals:triage")
    if not (school or front_door):
        raise Forbidden(
            "Only the notice's school, or the front door after telephoning it, can acknowledge"
            " an Operation Encompass notice."
        )
    stream = encompass.stream_id(notice_id)
    current = encompass.replay(recorded.decode() for recorded in ctx.read_stream(stream))
    command = encompass.AcknowledgeNotice(
        notice_id=notice_id,
        school_id=scope.organisation if school else None,
        acknowledged_by=scope.subject,
        acknowledged_at=ctx.now,
        by_telephone=front_door,
    )
    events = encompass.acknowledge(current, command)
    assert current is not None  # another school's notice, or none, raised NoticeNotFound
    if events:
        ctx.append(stream, current.version, events)
        current = encompass.apply(current, events[0])
    acknowledged_at = current.acknowledged_at
    assert acknowledged_at is not None
    return CommandResult(
        200,
        NoticeAcknowledged(
            notice_id=notice_id,
            acknowledged_at=acknowledged_at,
            in_time=acknowledged_at < current.due_by,
        ),
    )


def _decide(
    ctx: CommandContext,
    referral_id: UUID,
    decide: Callable[[domain.Referral | None], list[EventData]],
) -> list[Any]:
    """Load the referral's stream, decide, and append after the version decided on.

    A concurrent decision on the same referral moves the stream on first: the
    append then fails with ConcurrencyConflict, which the runner answers 409.
    """
    stream = domain.stream_id(referral_id)
    current = domain.replay(recorded.decode() for recorded in ctx.read_stream(stream))
    events = decide(current)
    assert current is not None  # a decision on nothing raised ReferralNotFound
    ctx.append(stream, current.version, events)
    return events


def triage(
    ctx: CommandContext, referral_id: UUID, decision: TriageDecision, settings: IntakeSettings
) -> CommandResult:
    """The front door's decision: level of need, route and, for early help, the locality."""
    if decision.level_of_need not in settings.levels_of_need:
        allowed = ", ".join(level.value for level in settings.levels_of_need)
        raise Invalid.field(
            "level_of_need",
            f"must be one of the levels this authority uses: {allowed}",
            "level_of_need_not_in_framework",
            "This level of need is not on the authority's framework.",
        )
    command = domain.TriageReferral(
        referral_id=referral_id,
        level_of_need=decision.level_of_need,
        route=decision.route,
        locality=decision.locality,
        rationale=decision.rationale,
        decided_by=ctx.scope.subject,
        decided_at=ctx.now,
        new_case_id=uuid4(),
    )

    def decide(current: domain.Referral | None) -> list[EventData]:
        open_case = open_case_of(ctx.conn, current.family_id) if current else None
        return domain.triage(current, replace(command, open_case_id=open_case))

    ctx.uow.serialise_appends()
    [event] = _decide(ctx, referral_id, decide)
    recorded = TriageRecorded(
        referral_id=event.referral_id,
        family_id=event.family_id,
        status=domain.ReferralStatus.TRIAGED,
        triage=TriageOutcome(
            level_of_need=event.level_of_need,
            route=event.route,
            locality=event.locality,
            case_id=event.case_id,
            joins_open_case=event.joins_open_case,
            decided_at=event.decided_at,
        ),
    )
    return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})


def withdraw(
    ctx: CommandContext, referral_id: UUID, withdrawal: WithdrawalRequest
) -> CommandResult:
    """Only the referring organisation, and only until the front door has triaged it."""
    if ctx.scope.kind != "partner" or ctx.scope.organisation is None:
        raise Forbidden("Only the referring partner can withdraw a referral.")
    command = domain.WithdrawReferral(
        referral_id=referral_id,
        organisation_id=ctx.scope.organisation,
        withdrawn_by=ctx.scope.subject,
        reason=withdrawal.reason,
        withdrawn_at=ctx.now,
    )
    [event] = _decide(ctx, referral_id, lambda current: domain.withdraw(current, command))
    recorded = WithdrawalRecorded(
        referral_id=event.referral_id,
        status=domain.ReferralStatus.WITHDRAWN,
        withdrawal=WithdrawalOutcome(withdrawn_at=event.withdrawn_at, reason=event.reason),
    )
    return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})


def confirm_match(
    ctx: CommandContext, referral_id: UUID, match_id: UUID, settings: IntakeSettings
) -> CommandResult:
    """The referral joins the known person's family, and that family's open case."""

    def decide(current: domain.Referral | None) -> list[EventData]:
        pending = current.pending_matches.get(match_id) if current else None
        records = (
            records_for_family(ctx.conn, pending.candidate_family_id)
            if pending
            else domain.FrontDoorRecords()
        )
        command = domain.ConfirmMatch(
            referral_id=referral_id,
            match_id=match_id,
            confirmed_by=ctx.scope.subject,
            confirmed_at=ctx.now,
            records=records,
            rules=settings.front_door_rules(),
        )
        return domain.confirm_match(current, command)

    _decide(ctx, referral_id, decide)
    return _matching_recorded(ctx, referral_id)


def reject_match(
    ctx: CommandContext, referral_id: UUID, match_id: UUID, decision: MatchDecision
) -> CommandResult:
    """The referral keeps its own family; the rejection and its reason stay on record."""
    command = domain.RejectMatch(
        referral_id=referral_id,
        match_id=match_id,
        reason=decision.reason,
        rejected_by=ctx.scope.subject,
        rejected_at=ctx.now,
    )
    _decide(ctx, referral_id, lambda current: domain.reject_match(current, command))
    return _matching_recorded(ctx, referral_id)


def unlink(ctx: CommandContext, referral_id: UUID, unlinking: UnlinkRequest) -> CommandResult:
    """Take the referral out of the family it was wrongly joined to."""
    command = domain.UnlinkReferral(
        referral_id=referral_id,
        new_family_id=uuid4(),
        reason=unlinking.reason,
        unlinked_by=ctx.scope.subject,
        unlinked_at=ctx.now,
    )
    _decide(ctx, referral_id, lambda current: domain.unlink(current, command))
    return _matching_recorded(ctx, referral_id)


def _matching_recorded(ctx: CommandContext, referral_id: UUID) -> CommandResult:
    family_id, matching = queries.matching_recorded_of(ctx.conn, referral_id)
    recorded = MatchingRecorded(referral_id=referral_id, family_id=family_id, matching=matching)
    return CommandResult(200, recorded, {"Location": f"/v1/referrals/{referral_id}"})


def _referrer_of(referrer: Referrer | None, scope: Scope, field: str) -> Referrer | None:
    """The referrer (or consulting practitioner) as submitted, with the organisation taken
    from the token; `field` names it in a refusal."""
    if referrer is None or scope.kind != "partner":
        return referrer
    claimed = referrer.organisation_id
    if claimed is not None and claimed != scope.organisation:
        raise Invalid.field(
            f"{field}.organisation_id",
            f"must be {scope.organisation} (or left out)",
            "organisation_mismatch",
            "The referring organisation is the one the bearer token belongs to.",
        )
    return referrer.model_copy(
        update={
            "organisation_id": scope.organisation,
            "organisation_type": PartnerOrganisationType(scope.organisation_type),
            "organisation_name": scope.name,
        }
    )


def _command_from(
    submission: ReferralSubmission,
    referral_id: UUID,
    referrer: Referrer | None,
    received_at: datetime,
    records: domain.FrontDoorRecords,
    settings: IntakeSettings,
) -> domain.ReceiveReferral:
    return domain.ReceiveReferral(
        referral_id=referral_id,
        family_id=uuid4(),
        received_at=received_at,
        referral_source=submission.referral_source,
        referrer=referrer,
        partner_reference=submission.partner_reference,
        urgency=submission.urgency,
        children=tuple(
            Child(person_id=uuid4(), **child.model_dump()) for child in submission.children
        ),
        household_members=tuple(
            HouseholdMember(person_id=uuid4(), **member.model_dump())
            for member in submission.household_members
        ),
        concerns=submission.concerns,
        consent=submission.consent,
        safeguarding_override=submission.safeguarding_override,
        police_grade=submission.police_grade,
        records=records,
        rules=settings.front_door_rules(),
    )


# --- consultations (issue 21) -------------------------------------------------------------


def _partner_only(scope: Scope, what: str) -> None:
    if scope.kind != "partner" or scope.organisation is None:
        raise Forbidden(f"Only a partner's practitioner can {what}.")


def request_consultation(ctx: CommandContext, submission: ConsultationSubmission) -> CommandResult:
    """A practitioner asks for advice; the family, if named, is not matched or recorded."""
    _partner_only(ctx.scope, "ask for a consultation")
    command = consultations.RequestConsultation(
        consultation_id=uuid4(),
        family_id=uuid4(),
        practitioner=_referrer_of(submission.practitioner, ctx.scope, "practitioner"),
        factors=tuple(submission.factors),
        question=submission.question,
        children=tuple(submission.children),
        requested_at=ctx.now,
    )
    ctx.append(consultations.stream_id(command.consultation_id), 0, consultations.request(command))
    accepted = ConsultationAccepted(
        consultation_id=command.consultation_id,
        status=consultations.ConsultationStatus.AWAITING_ADVICE,
        requested_at=command.requested_at,
    )
    return CommandResult(
        201, accepted, {"Location": f"/v1/consultations/{command.consultation_id}"}
    )


def _consultation(ctx: CommandContext, consultation_id: UUID) -> consultations.Consultation | None:
    stream = consultations.stream_id(consultation_id)
    return consultations.replay(recorded.decode() for recorded in ctx.read_stream(stream))


def record_advice(
    ctx: CommandContext, consultation_id: UUID, submission: AdviceSubmission
) -> CommandResult:
    current = _consultation(ctx, consultation_id)
    command = consultations.RecordAdvice(
        consultation_id=consultation_id,
        outcome=submission.outcome,
        advice=submission.advice,
        advised_by=ctx.scope.subject,
        advised_at=ctx.now,
    )
    events = consultations.advise(current, command)
    ctx.append(consultations.stream_id(consultation_id), current.version, events)
    view = queries.consultation_view(ctx.conn, ctx.scope, consultation_id)
    return CommandResult(201, view, {"Location": f"/v1/consultations/{consultation_id}"})


def refer_consultation(
    ctx: CommandContext,
    consultation_id: UUID,
    submission: ReferralSubmission,
    settings: IntakeSettings,
) -> CommandResult:
    """The practitioner refers as advised: the referral is received as any other, and the
    consultation records which referral it became, in the same transaction."""
    _partner_only(ctx.scope, "refer from a consultation")
    current = _consultation(ctx, consultation_id)
    command = consultations.ReferAsAdvised(
        consultation_id=consultation_id,
        organisation_id=ctx.scope.organisation,
        referral_id=uuid4(),
        referred_at=ctx.now,
    )
    events = consultations.refer(current, command)
    accepted = _receive(ctx, submission, settings, command.referral_id)
    ctx.append(consultations.stream_id(consultation_id), current.version, events)
    return CommandResult(202, accepted, {"Location": f"/v1/referrals/{accepted.referral_id}"})
