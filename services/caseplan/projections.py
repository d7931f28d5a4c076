"""Case plan's read models: the single chronology of every family, and its cases.

`chronology` follows every event about a family from every service: its entries,
who is involved, and the referrals and Operation Encompass notices (for the
performance report). `cases` keeps
allocation's events that open and plan a case (`case_inputs`, which commands
read to know the case) and the case view and review rows the API lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)

from caseplan import domain
from caseplan.domain import (
    Case,
    CaseStatus,
    SafeguardingOverride,
    StandingConsent,
    TeamMember,
    add_months,
)
from caseplan.settings import caseplan_settings
from caseplan.tables import metadata as tables_metadata
from hub.clock import utc_now
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.caseplan import (
    AssessmentCompleted,
    CaseClosed,
    CaseSteppedDown,
    CaseSteppedUp,
    ChildSchoolRecorded,
    ConsentNarrowed,
    ConsentRecorded,
    ConsentWithdrawn,
    IdentifiedNeed,
    PlanActionAdded,
    PlanOutcomeAgreed,
    PlanReviewed,
    SafeguardingOverrideEnded,
    SafeguardingOverrideRecorded,
    ServiceStarted,
    TeamMemberAdded,
    TeamMemberKind,
    TeamMemberRemoved,
)
from hub.contracts.codes import ConsentScope, TriageRoute
from hub.contracts.intake import (
    ConsultationAdvised,
    ConsultationReferred,
    ConsultationRequested,
    EncompassNoticeAcknowledged,
    EncompassNoticeAlerted,
    EncompassNoticeIssued,
    MatchConfirmed,
    MatchRejected,
    PossibleMatchFound,
    ReferralReceived,
    ReferralTriaged,
    ReferralUnlinked,
    ReferralWithdrawn,
)
from hub.contracts.registry import event_model
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime, insert_if_absent, upsert

# One metadata with case plan's other tables (caseplan.tables), as the migrations make them.
metadata = tables_metadata

chronology_entries = Table(
    "chronology_entries",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("service", String(50), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("actor", String(200), nullable=True),
    Column("summary", Text, nullable=False),
)
Index(
    "ix_chronology_family_order",
    chronology_entries.c.family_id,
    chronology_entries.c.occurred_at,
    chronology_entries.c.event_id,
)

# Who else is working with the family: one row per organisation, team or person.
family_involvement = Table(
    "family_involvement",
    metadata,
    Column("family_id", String(36), primary_key=True),
    Column("kind", String(30), primary_key=True),
    Column("party_id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("detail", String(400), nullable=True),
    Column("first_seen_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
)

# Referrals as the front door saw them, for the performance report's early stages.
family_referrals = Table(
    "family_referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("referral_source", String(10), nullable=False),
    Column("children", Text, nullable=False),
    Column("triaged_at", UtcDateTime(), nullable=True),
    Column("route", String(40), nullable=True),
    Column("locality", String(100), nullable=True),
    Column("case_id", String(36), nullable=True),
    # (0006) Who referred: their involvement with the family follows the referral when the
    # front door moves it.
    Column("referrer_id", String(200), nullable=True),
    # (0007) The family's consent the referral carried (JSON: given_by, given_at, covers),
    # and whether its triage joined an open case: the consent of the referral that opened
    # a case's episode stands until staff record, narrow or withdraw it.
    Column("consent", Text, nullable=True),
    Column("joins_open_case", Boolean, nullable=True),
)
Index("ix_family_referrals_case", family_referrals.c.case_id)

# (0011) Each Operation Encompass notice's school, deadline and acknowledgement: the
# performance report's measures per school. Nothing about the child.
encompass_notices = Table(
    "encompass_notices",
    metadata,
    Column("notice_id", String(36), primary_key=True),
    Column("school_id", String(64), nullable=True),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("due_by", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime(), nullable=True),
)
Index("ix_encompass_notices_issued", encompass_notices.c.issued_at)

# (0006) Triages that arrived before their referral (after a match the triage is keyed
# by another family, on another partition): the referral takes them when it arrives.
early_triages = Table(
    "early_triages",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("triaged_at", UtcDateTime(), nullable=False),
    Column("route", String(40), nullable=False),
    Column("locality", String(100), nullable=True),
    Column("case_id", String(36), nullable=True),
    Column("joins_open_case", Boolean, nullable=True),  # (0007)
)

# The family each referral belongs to now, when the front door has moved it (a match
# confirmed, a wrong one unlinked). A move is keyed by the family the referral goes
# to, so it can arrive before or after the referral's earlier events, which sit on
# another family's partition: the latest move (by its time) decides either way.
referral_families = Table(
    "referral_families",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("moved_at", UtcDateTime(), nullable=False),
)
Index("ix_chronology_subject", chronology_entries.c.subject)

chronology = Projection(
    "chronology",
    [
        chronology_entries,
        family_involvement,
        family_referrals,
        referral_families,
        early_triages,
        encompass_notices,
    ],
)
_INSERT_ENTRY = insert(chronology_entries)
# Built once: every event runs these, and building them per event cost more than running.
_FAMILY_OF_REFERRAL = select(referral_families.c.family_id).where(
    referral_families.c.referral_id == bindparam("referral_id")
)
_FIRST_SEEN = select(
    family_involvement.c.first_seen_at,
    family_involvement.c.last_seen_at,
    family_involvement.c.name,
    family_involvement.c.detail,
).where(
    family_involvement.c.family_id == bindparam("family_id"),
    family_involvement.c.kind == bindparam("kind"),
    family_involvement.c.party_id == bindparam("party_id"),
)


def _family_of(conn, meta: EventMeta) -> str:
    """The family an event belongs in: for a referral's events, where the referral is now."""
    if meta.producer != "intake" or meta.subject is None:
        return meta.family_id
    moved = conn.execute(_FAMILY_OF_REFERRAL, {"referral_id": meta.subject}).scalar()
    return moved or meta.family_id


def _record(conn, meta: EventMeta, *, actor: str | None, summary: str) -> None:
    conn.execute(
        _INSERT_ENTRY,
        {
            "event_id": meta.event_id,
            "family_id": _family_of(conn, meta),
            "occurred_at": meta.occurred_at,
            "recorded_at": utc_now(),
            "event_type": meta.event_type,
            "service": meta.producer,
            "subject": meta.subject,
            "actor": actor,
            "summary": summary,
        },
    )


def _involve(
    conn, meta: EventMeta, kind: str, party_id: str, name: str, detail: str | None = None
) -> None:
    _seen(conn, _family_of(conn, meta), kind, party_id, name, detail, meta.occurred_at)


def _seen(
    conn,
    family_id: str,
    kind: str,
    party_id: str,
    name: str,
    detail: str | None,
    first: datetime,
    last: datetime | None = None,
) -> None:
    """Widen the party's involvement to the period; the latest event names them."""
    last = last or first
    key = {"family_id": family_id, "kind": kind, "party_id": party_id}
    seen = conn.execute(_FIRST_SEEN, key).first()
    if seen is not None and seen.last_seen_at > last:
        name, detail = seen.name, seen.detail
    upsert(
        conn,
        family_involvement,
        {
            **key,
            "name": name,
            "detail": detail,
            "first_seen_at": min(seen.first_seen_at, first) if seen else first,
            "last_seen_at": max(seen.last_seen_at, last) if seen else last,
        },
        key=("family_id", "kind", "party_id"),
    )


@chronology.on(ReferralReceived)
def _referral_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    referrer = event.referrer
    conn.execute(
        insert(family_referrals),
        {
            "referral_id": str(event.referral_id),
            "family_id": _family_of(conn, meta),
            "received_at": event.received_at,
            "referral_source": event.referral_source.value,
            "children": json.dumps(
                [
                    {
                        "person_id": str(child.person_id),
                        "given_name": child.given_name,
                        "family_name": child.family_name,
                        "date_of_birth": _iso(child.date_of_birth),
                        "expected_date_of_birth": _iso(child.expected_date_of_birth),
                    }
                    for child in event.children
                ]
            ),
            "referrer_id": referrer.organisation_id if referrer is not None else None,
            "consent": event.consent.model_dump_json() if event.consent is not None else None,
        },
    )
    triage = conn.execute(
        select(early_triages).where(early_triages.c.referral_id == str(event.referral_id))
    ).first()
    if triage is not None:
        conn.execute(
            update(family_referrals)
            .where(family_referrals.c.referral_id == triage.referral_id)
            .values(
                triaged_at=triage.triaged_at,
                route=triage.route,
                locality=triage.locality,
                case_id=triage.case_id,
                joins_open_case=triage.joins_open_case,
            )
        )
        conn.execute(delete(early_triages).where(early_triages.c.referral_id == triage.referral_id))
    if referrer is not None and referrer.organisation_id is not None:
        _involve(
            conn,
            meta,
            "referrer",
            referrer.organisation_id,
            referrer.organisation_name or referrer.organisation_id,
            referrer.organisation_type.value if referrer.organisation_type else None,
        )
    who = (
        f"{referrer.person_name}, {referrer.organisation_name}"
        if referrer and referrer.organisation_name
        else referrer.person_name
        if referrer
        else "anonymous referrer"
    )
    children = len(event.children)
    _record(
        conn,
        meta,
        actor=who,
        summary=(
            f"Referral received ({event.urgency.value}) about {children} "
            f"{'child' if children == 1 else 'children'}; concerns: "
            f"{', '.join(f.value for f in event.concerns.factors)}"
        ),
    )


# Free text (rationale, reasons) stays out of the summaries, as the concerns'
# description does above: the chronology lists codes, who and when.


@chronology.on(ReferralTriaged)
def _referral_triaged(conn, event: ReferralTriaged, meta: EventMeta) -> None:
    route = event.route.value
    if event.route is TriageRoute.EARLY_HELP:
        opened = "joined open case" if event.joins_open_case else "opened case"
        route = f"{route} in {event.locality}, {opened} {event.case_id}"
    triage = {
        "triaged_at": event.decided_at,
        "route": event.route.value,
        "locality": event.locality,
        "case_id": str(event.case_id) if event.case_id else None,
        "joins_open_case": event.joins_open_case,
    }
    known = conn.execute(
        update(family_referrals)
        .where(family_referrals.c.referral_id == str(event.referral_id))
        .values(triage)
    ).rowcount
    if not known:
        conn.execute(insert(early_triages), {"referral_id": str(event.referral_id), **triage})
    _record(
        conn,
        meta,
        actor=event.decided_by,
        summary=f"Referral triaged: level of need {event.level_of_need.value}; route {route}",
    )


@chronology.on(ReferralWithdrawn)
def _referral_withdrawn(conn, event: ReferralWithdrawn, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.withdrawn_by,
        summary="Referral withdrawn by the referrer before triage",
    )


@chronology.on(PossibleMatchFound)
def _possible_match(conn, event: PossibleMatchFound, meta: EventMeta) -> None:
    # Which other family is the front door's business until confirmed: not named here.
    agrees = ", ".join(field.value for field in event.agrees_on)
    _record(
        conn,
        meta,
        actor=None,
        summary=f"A child may already be known to the hub (agrees on {agrees}): for the "
        "front door to confirm or reject",
    )


@chronology.on(MatchRejected)
def _match_rejected(conn, event: MatchRejected, meta: EventMeta) -> None:
    _record(conn, meta, actor=event.rejected_by, summary="Possible match rejected: another child")


def _move_referral(conn, meta: EventMeta, referral_id: str, family_id: str) -> None:
    """A referral the front door joined to, or took out of, a family takes its history along
    (unless a later move has arrived already: then that one stands)."""
    later = conn.execute(
        select(referral_families.c.moved_at).where(
            referral_families.c.referral_id == referral_id,
            referral_families.c.moved_at > meta.occurred_at,
        )
    ).first()
    if later is not None:
        return
    upsert(
        conn,
        referral_families,
        {"referral_id": referral_id, "family_id": family_id, "moved_at": meta.occurred_at},
        key=("referral_id",),
    )
    entries = chronology_entries.c
    conn.execute(
        update(chronology_entries)
        .where(entries.service == "intake", entries.subject == referral_id)
        .values(family_id=family_id)
    )
    referral = conn.execute(
        select(family_referrals.c.family_id, family_referrals.c.referrer_id).where(
            family_referrals.c.referral_id == referral_id
        )
    ).first()
    if referral is None:
        return
    conn.execute(
        update(family_referrals)
        .where(family_referrals.c.referral_id == referral_id)
        .values(family_id=family_id)
    )
    if referral.referrer_id is not None and referral.family_id != family_id:
        _move_referrer(conn, referral_id, referral.referrer_id, referral.family_id, family_id)


def _move_referrer(conn, referral_id: str, referrer_id: str, old: str, new: str) -> None:
    """The referrer's involvement goes with the referral, as if it had always been there;
    it stays with the old family while another of that family's referrals is theirs."""
    involved = family_involvement.c
    where = (
        involved.family_id == old,
        involved.kind == "referrer",
        involved.party_id == referrer_id,
    )
    row = conn.execute(select(family_involvement).where(*where)).first()
    if row is None:
        return
    _seen(
        conn,
        new,
        "referrer",
        referrer_id,
        row.name,
        row.detail,
        row.first_seen_at,
        row.last_seen_at,
    )
    others = conn.execute(
        select(family_referrals.c.referral_id).where(
            family_referrals.c.family_id == old,
            family_referrals.c.referrer_id == referrer_id,
            family_referrals.c.referral_id != referral_id,
        )
    ).first()
    if others is None:
        conn.execute(delete(family_involvement).where(*where))


@chronology.on(MatchConfirmed)
def _match_confirmed(conn, event: MatchConfirmed, meta: EventMeta) -> None:
    _move_referral(conn, meta, str(event.referral_id), str(event.family_id))
    _record(
        conn,
        meta,
        actor=event.confirmed_by,
        summary="Referral joined this family: the front door confirmed a child was already known",
    )


@chronology.on(ReferralUnlinked)
def _referral_unlinked(conn, event: ReferralUnlinked, meta: EventMeta) -> None:
    _move_referral(conn, meta, str(event.referral_id), str(event.family_id))
    _record(
        conn,
        meta,
        actor=event.unlinked_by,
        summary="Referral taken out of the family it was wrongly matched to",
    )


@chronology.on(CaseAllocated)
def _case_allocated(conn, event: CaseAllocated, meta: EventMeta) -> None:
    lead = event.lead_professional
    _involve(conn, meta, "lead_professional", str(lead.worker_id), lead.name, _contact(lead))
    _involve(conn, meta, "team", event.team_id, lead.team_name, event.locality)
    what = "Case reallocated" if event.is_reallocation else "Case allocated"
    _record(
        conn,
        meta,
        actor=event.allocated_by,
        summary=f"{what} to {lead.name} ({lead.role}), {lead.team_name}, {event.locality}",
    )


@chronology.on(PanelDecisionRecorded)
def _panel_decision(conn, event: PanelDecisionRecorded, meta: EventMeta) -> None:
    for service in event.package:
        _involve(conn, meta, "provider", service.provider_id, service.provider_id, service.service)
    lead = event.lead_professional
    _involve(conn, meta, "lead_professional", str(lead.worker_id), lead.name, _contact(lead))
    services = "; ".join(f"{s.service} ({s.provider_id})" for s in event.package)
    _record(
        conn,
        meta,
        actor=", ".join(member.name for member in event.members_present),
        summary=(
            f"Panel agreed a package: {services}; lead professional {lead.name}; "
            f"review by {event.review_date.isoformat()}"
        ),
    )


@chronology.on(AssessmentCompleted)
def _assessment_completed(conn, event: AssessmentCompleted, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.completed_by,
        summary=(
            f"Assessment completed: factors {', '.join(f.value for f in event.factors)}; "
            f"{len(event.needs)} needs; recommended level "
            f"{event.recommended_level_of_need.value}"
        ),
    )


@chronology.on(PlanActionAdded)
def _action_added(conn, event: PlanActionAdded, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.added_by,
        summary=f"Plan action for {event.who} by {event.by_when.isoformat()}",
    )


@chronology.on(PlanOutcomeAgreed)
def _outcome_agreed(conn, event: PlanOutcomeAgreed, meta: EventMeta) -> None:
    _record(
        conn, meta, actor=event.agreed_by, summary=f"Plan outcome agreed: {event.outcome.value}"
    )


@chronology.on(PlanReviewed)
def _plan_reviewed(conn, event: PlanReviewed, meta: EventMeta) -> None:
    ratings = ", ".join(item.rating.value for item in event.progress)
    _record(
        conn,
        meta,
        actor=event.reviewed_by,
        summary=(
            f"Plan reviewed: progress {ratings}; next review by "
            f"{event.next_review_date.isoformat()}"
        ),
    )


@chronology.on(CaseSteppedUp)
def _stepped_up(conn, event: CaseSteppedUp, meta: EventMeta) -> None:
    contact = event.social_care_contact
    _involve(conn, meta, "social_care", contact.team, contact.team, contact.name)
    _record(
        conn,
        meta,
        actor=event.decided_by,
        summary=(
            f"Stepped up to children's social care ({contact.team}); factors "
            f"{', '.join(f.value for f in event.factors)}"
        ),
    )


@chronology.on(CaseSteppedDown)
def _stepped_down(conn, event: CaseSteppedDown, meta: EventMeta) -> None:
    _involve(
        conn,
        meta,
        "social_care",
        event.social_care_reference,
        "Children's social care",
        f"reference {event.social_care_reference}",
    )
    _record(
        conn,
        meta,
        actor="children's social care",
        summary=(
            f"Stepped down from children's social care (reference "
            f"{event.social_care_reference}); early help case {event.case_id} awaits allocation"
        ),
    )


@chronology.on(CaseClosed)
def _case_closed(conn, event: CaseClosed, meta: EventMeta) -> None:
    achieved = sum(1 for item in event.outcomes if item.achieved)
    _record(
        conn,
        meta,
        actor=event.closed_by,
        summary=(
            f"Case closed: {event.reason.value}; outcome achieved on {achieved} of "
            f"{len(event.outcomes)} needs"
        ),
    )


# The team around the family, consent, overrides and schools: codes, ids and dates only
# (the role on the plan and the reasons are free text, and stay in the case view).


@chronology.on(TeamMemberAdded)
def _team_member_added(conn, event: TeamMemberAdded, meta: EventMeta) -> None:
    _involve(conn, meta, "team_member", event.member_id, event.member_id, event.member_kind.value)
    _record(
        conn,
        meta,
        actor=event.added_by,
        summary=f"{event.member_id} ({event.member_kind.value}) joined the team around the family",
    )


@chronology.on(TeamMemberRemoved)
def _team_member_removed(conn, event: TeamMemberRemoved, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.removed_by,
        summary=f"{event.member_id} left the team around the family",
    )


def _purposes(purposes) -> str:
    return ", ".join(purpose.value for purpose in purposes)


@chronology.on(ConsentRecorded)
def _consent_recorded(conn, event: ConsentRecorded, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.recorded_by,
        summary=f"Consent recorded for this case, given {event.given_at.date().isoformat()}: "
        f"{_purposes(event.purposes)}",
    )


@chronology.on(ConsentNarrowed)
def _consent_narrowed(conn, event: ConsentNarrowed, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.narrowed_by,
        summary=f"Consent narrowed; it now covers: {_purposes(event.purposes)}",
    )


@chronology.on(ConsentWithdrawn)
def _consent_withdrawn(conn, event: ConsentWithdrawn, meta: EventMeta) -> None:
    _record(conn, meta, actor=event.withdrawn_by, summary="Consent withdrawn for this case")


@chronology.on(SafeguardingOverrideRecorded)
def _override_recorded(conn, event: SafeguardingOverrideRecorded, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=event.decided_by,
        summary=f"Safeguarding override recorded, to be reviewed by "
        f"{event.review_date.isoformat()}",
    )


@chronology.on(SafeguardingOverrideEnded)
def _override_ended(conn, event: SafeguardingOverrideEnded, meta: EventMeta) -> None:
    _record(conn, meta, actor=event.ended_by, summary="Safeguarding override ended")


@chronology.on(ChildSchoolRecorded)
def _child_school(conn, event: ChildSchoolRecorded, meta: EventMeta) -> None:
    _involve(conn, meta, "school", event.school_id, event.school_id, None)
    _record(
        conn,
        meta,
        actor=event.recorded_by,
        summary=f"School recorded for child {event.person_id}: {event.school_id}",
    )


@chronology.on(ServiceStarted)
def _service_started(conn, event: ServiceStarted, meta: EventMeta) -> None:
    _involve(conn, meta, "provider", event.provider_id, event.provider_id, event.service)
    _record(
        conn,
        meta,
        actor=event.recorded_by,
        summary=f"Service started on {event.started_on.isoformat()}: {event.service} "
        f"({event.provider_id})",
    )


def _contact(practitioner) -> str:
    return ", ".join(
        part for part in (practitioner.role, practitioner.email, practitioner.phone) if part
    )


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# --- cases ---------------------------------------------------------------------------

# Every event about a case, as it arrived: allocation's, and the own ones as they are
# appended. The case is folded from them once per event (see `_on_case_event`).
case_inputs = Table(
    "case_inputs",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("data_json", Text, nullable=False),
)
Index("ix_case_inputs_case", case_inputs.c.case_id, case_inputs.c.occurred_at)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("status", String(30), nullable=False),
    Column("locality", String(100), nullable=True),
    Column("team_id", String(100), nullable=True),
    Column("lead_worker_id", String(36), nullable=True),
    Column("lead_email", String(254), nullable=True),
    Column("lead_staff_client_id", String(100), nullable=True),
    Column("lead_name", String(100), nullable=True),
    Column("opened_at", UtcDateTime(), nullable=True),
    Column("allocated_at", UtcDateTime(), nullable=True),
    Column("episode", Integer, nullable=False),
    Column("re_referral", Boolean, nullable=False),
    Column("assessed_at", UtcDateTime(), nullable=True),
    Column("needs_count", Integer, nullable=False),
    Column("plan_activated_at", UtcDateTime(), nullable=True),
    Column("service_start", Date, nullable=True),
    # (0009) The day the first service of the episode's package actually started.
    Column("service_started_on", Date, nullable=True),
    Column("review_due", Date, nullable=True),
    Column("reviews", Integer, nullable=False),
    Column("stepped_up_at", UtcDateTime(), nullable=True),
    Column("stepped_down_at", UtcDateTime(), nullable=True),
    Column("closed_at", UtcDateTime(), nullable=True),
    Column("closure_reason", String(40), nullable=True),
    Column("all_needs_achieved", Boolean, nullable=True),
    Column("detail", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)
Index("ix_cases_family", cases.c.family_id)
Index("ix_cases_review_due", cases.c.status, cases.c.review_due)

case_reviews = Table(
    "case_reviews",
    metadata,
    Column("review_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False),
    Column("locality", String(100), nullable=True),
    Column("reviewed_at", UtcDateTime(), nullable=False),
    Column("due", Date, nullable=True),
    Column("on_time", Boolean, nullable=False),
)
Index("ix_case_reviews_reviewed_at", case_reviews.c.reviewed_at)

# Drafts are practitioners' work in progress, not facts: kept here until the
# assessment is completed (then it is an event), never published, never replayed.
assessment_drafts = Table(
    "assessment_drafts",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("draft", Text, nullable=False),
    Column("saved_by", String(200), nullable=False),
    Column("saved_at", UtcDateTime(), nullable=False),
)

case_register = Projection("cases", [case_inputs, cases, case_reviews])

_EMPTY_DETAIL = {
    "assessment": None,
    "package": [],
    "actions": [],
    "outcomes": {},
    "reviews": [],
    "step_up": None,
    "step_down": None,
    "closure": None,
    "episodes": [],
    "services_started": [],
}


def _re_referral(conn, case_id: str, family_id: str, at: datetime) -> bool:
    """Whether the family had another case closed within the re-referral window before `at`."""
    closures = conn.execute(
        select(cases.c.closed_at).where(
            and_(
                cases.c.family_id == family_id,
                cases.c.case_id != case_id,
                cases.c.closed_at.is_not(None),
            )
        )
    ).all()
    return any(_within_window(closed_at, at) for (closed_at,) in closures)


def _within_window(closed_at: datetime | None, at: datetime) -> bool:
    months = caseplan_settings().re_referral_window_months
    return (
        closed_at is not None
        and closed_at <= at
        and add_months(closed_at.date(), months) >= at.date()
    )


def _data(event) -> dict[str, Any]:
    return json.loads(event.model_dump_json(exclude={"case_id", "family_id"}))


def _new_row(event) -> dict[str, Any]:
    # Its status is set by the domain's fold (`_advance`).
    return {
        "case_id": str(event.case_id),
        "family_id": str(event.family_id),
        "status": None,
        "episode": 0,
        "re_referral": False,
        "needs_count": 0,
        "reviews": 0,
        "detail": json.loads(json.dumps(_EMPTY_DETAIL)),
    }


_REOPENED = {
    "assessed_at": None,
    "needs_count": 0,
    "plan_activated_at": None,
    "service_start": None,
    "service_started_on": None,
    "review_due": None,
    "reviews": 0,
    "stepped_up_at": None,
    "closed_at": None,
    "closure_reason": None,
    "all_needs_achieved": None,
}


def _state_record(case: Case) -> dict[str, Any]:
    """The domain's case as the view row keeps it (its status is the row's own column)."""
    consent = case.consent
    override = case.override
    return {
        "version": case.version,
        "needs": [json.loads(need.model_dump_json()) for need in case.needs],
        "assessed": case.assessed,
        "plan_active": case.plan_active,
        "package": [list(service) for service in case.package],
        "services_started": [list(service) for service in case.services_started],
        "team": [
            {
                "member_id": m.member_id,
                "member_kind": m.member_kind.value,
                "role": m.role,
                "added_at": m.added_at.isoformat(),
                "added_by": m.added_by,
            }
            for m in case.team
        ],
        "schools": [[str(child), school] for child, school in case.schools],
        "consent_decided": case.consent_decided,
        "consent": None
        if consent is None
        else {
            "purposes": [p.value for p in consent.purposes],
            "given_by": consent.given_by,
            "given_at": _iso_time(consent.given_at),
            "narrowed_at": _iso_time(consent.narrowed_at),
        },
        "override": None
        if override is None
        else {
            "reason": override.reason,
            "decided_by": override.decided_by,
            "decided_at": override.decided_at.isoformat(),
            "review_date": override.review_date.isoformat(),
        },
    }


def _iso_time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def standing_consent_of(record: Mapping[str, Any] | None) -> StandingConsent | None:
    if record is None:
        return None
    return StandingConsent(
        purposes=tuple(ConsentScope(p) for p in record["purposes"]),
        given_by=record["given_by"],
        given_at=_time(record["given_at"]),
        narrowed_at=_time(record["narrowed_at"]),
    )


def _case_of(row: Mapping[str, Any], detail: Mapping[str, Any]) -> Case:
    state = detail["case"]
    return Case(
        case_id=UUID(row["case_id"]),
        family_id=UUID(row["family_id"]),
        status=CaseStatus(row["status"]),
        version=state["version"],
        needs=tuple(IdentifiedNeed.model_validate(need) for need in state["needs"]),
        assessed=state["assessed"],
        plan_active=state["plan_active"],
        # Kept before 0007 (issue 14): no team, schools, consent or override yet.
        team=tuple(
            TeamMember(
                m["member_id"],
                TeamMemberKind(m["member_kind"]),
                m["role"],
                datetime.fromisoformat(m["added_at"]),
                m["added_by"],
            )
            for m in state.get("team", ())
        ),
        schools=tuple((UUID(child), school) for child, school in state.get("schools", ())),
        consent_decided=state.get("consent_decided", False),
        consent=standing_consent_of(state.get("consent")),
        override=None
        if state.get("override") is None
        else SafeguardingOverride(
            state["override"]["reason"],
            state["override"]["decided_by"],
            datetime.fromisoformat(state["override"]["decided_at"]),
            date.fromisoformat(state["override"]["review_date"]),
        ),
        package=tuple((provider, service) for provider, service in state["package"]),
        services_started=tuple(
            (provider, service) for provider, service in state["services_started"]
        ),
    )


def _advance(conn, row: dict[str, Any] | None, event, reviews: list[dict[str, Any]]):
    """The case row after one more event: the domain's `apply` moves the case (its status,
    version, needs), kept in the row for commands to decide on; `_view` adds what the
    view shows. `reviews` collects the review rows."""
    before = None if row is None else _case_of(row, row["detail"])
    if before is None and not isinstance(event, CaseAllocated | CaseSteppedDown):
        # Only in a rebuild, which replays the own stream before allocation's topic:
        # until the fact that opened the case is back, the case is taken as open, as it
        # was when the event was recorded.
        before = Case(event.case_id, event.family_id, CaseStatus.OPEN)
    after = domain.apply(before, event)
    row = _view(conn, row, before, event, reviews)
    row["status"] = after.status.value
    row["detail"]["case"] = _state_record(after)
    return row


def _view(
    conn, row: dict[str, Any] | None, before: Case | None, event, reviews: list[dict[str, Any]]
):
    """The case view after one more event, beside the case's state `before` it."""
    if isinstance(event, CaseSteppedDown):
        row = _new_row(event)
        row.update(locality=event.locality, stepped_down_at=event.stepped_down_at)
        row["detail"]["step_down"] = json.loads(
            event.model_dump_json(exclude={"case_id", "family_id", "children"})
        )
        return row
    if row is None:
        row = _new_row(event)
    detail = row["detail"]
    if isinstance(event, CaseAllocated):
        lead = event.lead_professional
        row.update(
            locality=event.locality,
            team_id=event.team_id,
            lead_worker_id=str(lead.worker_id),
            lead_email=lead.email,
            lead_staff_client_id=lead.staff_client_id,
            lead_name=lead.name,
            allocated_at=event.allocated_at,
        )
        # A row with no episode yet was begun by a later event, in a rebuild.
        if row["episode"] == 0 or domain.opens_episode(before, event):
            own_closure = row.get("closed_at")
            if before is not None and before.status is CaseStatus.CLOSED:
                # The closed episode stays on record; the reopened one starts afresh.
                kept = {
                    k: detail.get(k, _EMPTY_DETAIL[k])
                    for k in _EMPTY_DETAIL
                    if k not in ("episodes", "step_down")
                }
                row["detail"] = {
                    **json.loads(json.dumps(_EMPTY_DETAIL)),
                    "episodes": [*detail["episodes"], kept],
                }
                row.update(_REOPENED)
            row.update(
                opened_at=event.allocated_at,
                episode=row["episode"] + 1,
                re_referral=_within_window(own_closure, event.allocated_at)
                or _re_referral(conn, row["case_id"], row["family_id"], event.allocated_at),
            )
    elif isinstance(event, PanelDecisionRecorded):
        lead = event.lead_professional
        detail["package"] = [json.loads(s.model_dump_json()) for s in event.package]
        row.update(
            plan_activated_at=row.get("plan_activated_at") or event.decided_at,
            service_start=min(s.start_date for s in event.package),
            review_due=event.review_date,
            lead_worker_id=str(lead.worker_id),
            lead_email=lead.email,
            lead_staff_client_id=lead.staff_client_id,
            lead_name=lead.name,
        )
    elif isinstance(event, AssessmentCompleted):
        detail["assessment"] = _data(event)
        row.update(assessed_at=event.completed_at, needs_count=len(event.needs))
    elif isinstance(event, PlanActionAdded):
        detail["actions"].append(_data(event))
    elif isinstance(event, PlanOutcomeAgreed):
        detail["outcomes"][str(event.need_id)] = _data(event)
    elif isinstance(event, PlanReviewed):
        due = row.get("review_due")
        on_time = due is None or event.reviewed_at.date() <= due
        detail["reviews"].append({**_data(event), "due": _iso(due), "on_time": on_time})
        reviews.append(
            {
                "review_id": str(event.review_id),
                "case_id": row["case_id"],
                "locality": row.get("locality"),
                "reviewed_at": event.reviewed_at,
                "due": due,
                "on_time": on_time,
            }
        )
        row.update(review_due=event.next_review_date, reviews=row["reviews"] + 1)
    elif isinstance(event, ServiceStarted):
        detail.setdefault("services_started", []).append(_data(event))
        first = row.get("service_started_on")
        row.update(service_started_on=min(first, event.started_on) if first else event.started_on)
    elif isinstance(event, CaseSteppedUp):
        detail["step_up"] = _data(event)
        row.update(stepped_up_at=event.stepped_up_at)
    elif isinstance(event, CaseClosed):
        detail["closure"] = _data(event)
        row.update(
            closed_at=event.closed_at,
            closure_reason=event.reason.value,
            all_needs_achieved=bool(event.outcomes) and all(o.achieved for o in event.outcomes),
        )
    return row


_LATEST_INPUT = (
    select(case_inputs.c.occurred_at, case_inputs.c.event_id)
    .where(case_inputs.c.case_id == bindparam("case_id"))
    .order_by(case_inputs.c.occurred_at.desc(), case_inputs.c.event_id.desc())
    .limit(1)
)


def _on_case_event(conn, event, meta: EventMeta) -> None:
    """Keep the event, then fold it onto the case.

    Live, an event is almost always the case's latest: it is applied to the case as
    stored, once. One that happened before an event already kept (the sources arrive
    in no particular order; a rebuild replays the own store before the topics) has
    the case folded afresh from its events in time order, so that the case ends the
    same whatever order they arrived in.
    """
    case_id = str(event.case_id)
    latest = conn.execute(_LATEST_INPUT, {"case_id": case_id}).first()
    insert_if_absent(
        conn,
        case_inputs,
        {
            "event_id": meta.event_id,
            "case_id": case_id,
            "event_type": meta.event_type,
            "occurred_at": meta.occurred_at,
            "data_json": event.model_dump_json(),
        },
    )
    stored = _stored_row(conn, case_id)
    is_latest = latest is not None and (latest.occurred_at, latest.event_id) < (
        meta.occurred_at,
        str(meta.event_id),
    )
    if stored is None or not is_latest or _kept_before_its_fold(stored["detail"]):
        _refold(conn, case_id)
        return
    reviews: list[dict[str, Any]] = []
    row = _advance(conn, stored, event, reviews)
    row["detail"] = json.dumps(row["detail"])
    conn.execute(
        update(cases).where(cases.c.case_id == case_id).values(**row, updated_at=utc_now())
    )
    if reviews:
        conn.execute(insert(case_reviews), reviews)


def _stored_row(conn, case_id: str) -> dict[str, Any] | None:
    found = conn.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
    if found is None:
        return None
    row = {key: value for key, value in found.items() if key != "updated_at"}
    row["detail"] = json.loads(row["detail"])
    return row


def _kept_before_its_fold(detail: Mapping[str, Any]) -> bool:
    """A row stored before the case was kept beside its view, or before its package and
    service starts were (issue 21): the next event folds it afresh."""
    return "case" not in detail or "package" not in detail["case"]


def _refold(conn, case_id: str) -> None:
    """The case and its view folded afresh from every event kept about it, in time order."""
    history = conn.execute(
        select(case_inputs.c.event_type, case_inputs.c.data_json)
        .where(case_inputs.c.case_id == case_id)
        .order_by(case_inputs.c.occurred_at, case_inputs.c.event_id)
    ).all()
    row, reviews = None, []
    for item in history:
        row = _advance(
            conn, row, event_model(item.event_type).model_validate_json(item.data_json), reviews
        )
    conn.execute(delete(case_reviews).where(case_reviews.c.case_id == case_id))
    conn.execute(delete(cases).where(cases.c.case_id == case_id))
    row["detail"] = json.dumps(row["detail"])
    conn.execute(insert(cases), {**row, "updated_at": utc_now()})
    if reviews:
        conn.execute(insert(case_reviews), reviews)


def stored_case(conn, case_id: UUID) -> Case | None:
    """The case as its events folded it, for a command to decide on; None if no event
    has opened it. The own events are folded as they are appended, in the command's
    transaction, so the case is current."""
    stored = _stored_row(conn, str(case_id))
    if stored is not None and _kept_before_its_fold(stored["detail"]):
        # Kept before the case (or its package) was stored beside its view: folded once,
        # then stored.
        _refold(conn, str(case_id))
        stored = _stored_row(conn, str(case_id))
    return None if stored is None else _case_of(stored, stored["detail"])


for _event_class in (
    CaseAllocated,
    PanelDecisionRecorded,
    AssessmentCompleted,
    PlanActionAdded,
    PlanOutcomeAgreed,
    PlanReviewed,
    CaseSteppedUp,
    CaseSteppedDown,
    CaseClosed,
    TeamMemberAdded,
    TeamMemberRemoved,
    ConsentRecorded,
    ConsentNarrowed,
    ConsentWithdrawn,
    SafeguardingOverrideRecorded,
    SafeguardingOverrideEnded,
    ChildSchoolRecorded,
    ServiceStarted,
):
    case_register.on(_event_class)(_on_case_event)


# --- consultations the front door answered (issue 21), for the performance report ---------

# Counts only: who asked about whom stays with intake.
front_door_consultations = Table(
    "front_door_consultations",
    metadata,
    Column("consultation_id", String(36), primary_key=True),
    Column("requested_at", UtcDateTime(), nullable=False),
    Column("organisation_type", String(40), nullable=True),
    Column("advice", String(30), nullable=True),
    Column("advised_at", UtcDateTime(), nullable=True),
    Column("referral_id", String(36), nullable=True),
    Column("referred_at", UtcDateTime(), nullable=True),
)
consultation_counts = Projection("consultations", [front_door_consultations])


@consultation_counts.on(ConsultationRequested)
def _consultation_requested(conn, event: ConsultationRequested, meta: EventMeta) -> None:
    organisation_type = event.practitioner.organisation_type
    insert_if_absent(
        conn,
        front_door_consultations,
        {
            "consultation_id": str(event.consultation_id),
            "requested_at": event.requested_at,
            "organisation_type": organisation_type.value if organisation_type else None,
        },
    )


def _consultation_row(consultation_id) -> Update:
    return update(front_door_consultations).where(
        front_door_consultations.c.consultation_id == str(consultation_id)
    )


@consultation_counts.on(ConsultationAdvised)
def _consultation_advised(conn, event: ConsultationAdvised, meta: EventMeta) -> None:
    conn.execute(
        _consultation_row(event.consultation_id).values(
            advice=event.outcome.value, advised_at=event.advised_at
        )
    )


@consultation_counts.on(ConsultationReferred)
def _consultation_referred(conn, event: ConsultationReferred, meta: EventMeta) -> None:
    conn.execute(
        _consultation_row(event.consultation_id).values(
            referral_id=str(event.referral_id), referred_at=event.referred_at
        )
    )


# --- Operation Encompass (issue 22) ---------------------------------------------------


@chronology.on(EncompassNoticeIssued)
def _encompass_issued(conn, event: EncompassNoticeIssued, meta: EventMeta) -> None:
    conn.execute(
        insert(encompass_notices),
        {
            "notice_id": str(event.notice_id),
            "school_id": event.school_id,
            "issued_at": event.issued_at,
            "due_by": event.due_by,
        },
    )
    to = event.school_id or "no known school (the front door finds it)"
    _record(
        conn,
        meta,
        actor=event.police_force,
        summary=f"Operation Encompass notice (police reference {event.police_reference}) "
        f"for a child, to {to}, due before {event.due_by:%d %b %Y %H:%M} UTC",
    )


@chronology.on(EncompassNoticeAcknowledged)
def _encompass_acknowledged(conn, event: EncompassNoticeAcknowledged, meta: EventMeta) -> None:
    conn.execute(
        update(encompass_notices)
        .where(encompass_notices.c.notice_id == str(event.notice_id))
        .values(acknowledged_at=event.acknowledged_at)
    )
    when = "in time" if event.in_time else "after its deadline"
    who = (
        "the front door, which told the school by telephone"
        if event.by_telephone
        else event.school_id
    )
    _record(
        conn,
        meta,
        actor=event.acknowledged_by,
        summary=f"Operation Encompass notice acknowledged by {who}, {when}",
    )


@chronology.on(EncompassNoticeAlerted)
def _encompass_alerted(conn, event: EncompassNoticeAlerted, meta: EventMeta) -> None:
    _record(
        conn,
        meta,
        actor=None,
        summary=f"Operation Encompass notice: front door alerted ({event.reason.label})",
    )


PROJECTIONS = (chronology, case_register, consultation_counts)
