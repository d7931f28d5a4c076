"""Allocation's read models: the queue and caseloads, panel agendas and decisions, and the
commissioned places taken from providers. Fed by intake's and caseplan's events from
Kafka and by allocation's own events in the transaction that stores them.
"""

from __future__ import annotations

import json

from sqlalchemy import (
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)

from allocation import registry
from allocation.settings import allocation_settings
from allocation.tables import metadata, panels
from hub.clock import utc_now
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.caseplan import AssessmentCompleted, CaseClosed, CaseSteppedDown
from hub.contracts.codes import TriageRoute, Urgency
from hub.contracts.identifiers import postcode_district
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

__all__ = ["PROJECTIONS", "metadata"]

# The queue's order: the most urgent first, as at the front door.
URGENCY_RANK = {Urgency.IMMEDIATE: 0, Urgency.URGENT: 1, Urgency.ROUTINE: 2}

# Referrals at the front door, by postcode district: what the localities can
# expect before triage sends cases their way, and (0003) the children's dates of
# birth and the concern factors, which triage does not repeat and auto-allocation needs.
incoming_referrals = Table(
    "incoming_referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("urgency", String(20), nullable=False),
    Column("postcode_district", String(4), nullable=False, index=True),
    Column("children_count", Integer, nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("children_dates_of_birth", Text, nullable=True),
    Column("concern_factors", Text, nullable=True),
)

# One row per early help case this service knows: waiting, allocated or closed.
allocation_cases = Table(
    "allocation_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("referral_id", String(36), nullable=True),
    Column("source", String(20), nullable=False),
    Column("locality", String(64), nullable=True),
    Column("urgency", String(20), nullable=False),
    Column("urgency_rank", Integer, nullable=False),
    # Comma-separated ISO dates and CIN factor codes.
    Column("children_dates_of_birth", Text, nullable=False),
    Column("concern_factors", Text, nullable=False),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("worker_id", String(36), nullable=True, index=True),
    Column("team_id", String(64), nullable=True, index=True),
    Column("lead_professional_name", String(100), nullable=True),
    Column("first_allocated_at", UtcDateTime(), nullable=True),
    Column("allocated_at", UtcDateTime(), nullable=True),
    Column("closed_at", UtcDateTime(), nullable=True),
)
Index(
    "ix_allocation_cases_queue",
    allocation_cases.c.status,
    allocation_cases.c.urgency_rank,
    allocation_cases.c.queued_at,
    allocation_cases.c.case_id,
)

# (0004) Which case each triaged referral went to: a referral's ReferralReceived can arrive
# after its triage (after a match the triage is keyed by another family, on another
# partition), and then brings the children, concerns and urgency the case lacked.
queued_referrals = Table(
    "queued_referrals",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("case_id", String(36), nullable=False, index=True),
)

# Cases with a completed assessment, each on its locality's next panel (none yet
# when no panel is scheduled: a new panel takes them), until the panel decides.
panel_agenda = Table(
    "panel_agenda",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("assessment_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("panel_id", String(36), nullable=True, index=True),
    Column("locality", String(64), nullable=True, index=True),
    Column("completed_at", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
)

panel_decisions = Table(
    "panel_decisions",
    metadata,
    Column("panel_id", String(36), primary_key=True),
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("decided_at", UtcDateTime(), nullable=False),
    Column("review_date", Date, nullable=False),
    Column("worker_id", String(36), nullable=False),
    Column("lead_professional_name", String(100), nullable=False),
    # The package and members present, as the event's JSON.
    Column("package", Text, nullable=False),
    Column("members_present", Text, nullable=False),
)

# Each commissioned place a panel took, until the case closes.
commissioned_places = Table(
    "commissioned_places",
    metadata,
    Column("panel_id", String(36), primary_key=True),
    Column("case_id", String(36), primary_key=True),
    Column("item", Integer, primary_key=True),
    Column("provider_id", String(64), nullable=False),
    Column("service", String(200), nullable=False),
    Column("taken_at", UtcDateTime(), nullable=False),
    Column("released_at", UtcDateTime(), nullable=True),
)
Index(
    "ix_commissioned_places_service",
    commissioned_places.c.provider_id,
    commissioned_places.c.service,
)


def _joined(values) -> str:
    return ",".join(str(value) for value in values)


def _split(text: str | None) -> list[str]:
    return [part for part in (text or "").split(",") if part]


# --- the front door's referrals -----------------------------------------------------

incoming = Projection("incoming_referrals", [incoming_referrals])
_INSERT_INCOMING = insert(incoming_referrals)


@incoming.on(ReferralReceived)
def _referral_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    conn.execute(
        _INSERT_INCOMING,
        {
            "referral_id": str(event.referral_id),
            "family_id": str(event.family_id),
            "urgency": event.urgency.value,
            "postcode_district": postcode_district(event.children[0].address.postcode),
            "children_count": len(event.children),
            "received_at": event.received_at,
            "children_dates_of_birth": _joined(
                child.date_of_birth or child.expected_date_of_birth for child in event.children
            ),
            "concern_factors": _joined(factor.value for factor in event.concerns.factors),
        },
    )


# --- the queue and caseloads --------------------------------------------------------
#
# The queue follows a case's events in whatever order they arrive and ends the same:
# a referral's facts merge into its case whether the referral or its triage comes
# first, and a closure that overtakes the triage is kept on a row the triage completes.

queue = Projection("allocation_queue", [allocation_cases, queued_referrals])
_INSERT_CASE = insert(allocation_cases)


def _case(conn, case_id: str):
    return conn.execute(
        select(allocation_cases).where(allocation_cases.c.case_id == case_id)
    ).first()


def _merged(existing: list[str], more: list[str]) -> list[str]:
    """`existing` and what `more` adds: a value `more` holds twice (twins' shared date of
    birth) is there twice, but a child two referrals both name is there once."""
    merged = list(existing)
    for value in dict.fromkeys(more):
        merged += [value] * max(0, more.count(value) - merged.count(value))
    return merged


def _add_referral_facts(conn, case, born: list[str], factors: list[str], urgency: Urgency):
    """A referral's children, concerns and urgency join its case's."""
    rank = min(case.urgency_rank, URGENCY_RANK[urgency])
    conn.execute(
        update(allocation_cases)
        .where(allocation_cases.c.case_id == case.case_id)
        .values(
            children_dates_of_birth=_joined(_merged(_split(case.children_dates_of_birth), born)),
            concern_factors=_joined(dict.fromkeys([*_split(case.concern_factors), *factors])),
            urgency_rank=rank,
            urgency=next(u for u, r in URGENCY_RANK.items() if r == rank).value,
        )
    )


@queue.on(ReferralReceived)
def _referral_arrived(conn, event: ReferralReceived, meta: EventMeta) -> None:
    case_id = conn.execute(
        select(queued_referrals.c.case_id).where(
            queued_referrals.c.referral_id == str(event.referral_id)
        )
    ).scalar()
    case = _case(conn, case_id) if case_id else None
    if case is not None:
        _add_referral_facts(
            conn,
            case,
            [str(c.date_of_birth or c.expected_date_of_birth) for c in event.children],
            [factor.value for factor in event.concerns.factors],
            event.urgency,
        )


@queue.on(ReferralTriaged)
def _triaged(conn, event: ReferralTriaged, meta: EventMeta) -> None:
    if event.route is not TriageRoute.EARLY_HELP:
        return
    conn.execute(
        insert(queued_referrals),
        {"referral_id": str(event.referral_id), "case_id": str(event.case_id)},
    )
    referral = conn.execute(
        select(incoming_referrals).where(incoming_referrals.c.referral_id == str(event.referral_id))
    ).first()
    existing = _case(conn, str(event.case_id))
    if existing is None:
        # Routine and no children or concerns until the referral arrives, if it has not.
        conn.execute(
            _INSERT_CASE,
            {
                "case_id": str(event.case_id),
                "family_id": str(event.family_id),
                "referral_id": str(event.referral_id),
                "source": "triage",
                "locality": event.locality,
                "urgency": Urgency.ROUTINE.value,
                "urgency_rank": URGENCY_RANK[Urgency.ROUTINE],
                "children_dates_of_birth": "",
                "concern_factors": "",
                "queued_at": event.decided_at,
                "status": "unallocated",
            },
        )
    elif existing.source == _CLOSED_BEFORE_QUEUED:
        # The closure came first: the case is what the triage says, and closed.
        conn.execute(
            update(allocation_cases)
            .where(allocation_cases.c.case_id == existing.case_id)
            .values(
                referral_id=str(event.referral_id),
                source="triage",
                locality=event.locality,
                queued_at=event.decided_at,
            )
        )
    # Otherwise a second referral joins an open case: its children and concerns join
    # too, and the case keeps its place (and its worker).
    if referral is not None:
        _add_referral_facts(
            conn,
            _case(conn, str(event.case_id)),
            _split(referral.children_dates_of_birth),
            _split(referral.concern_factors),
            Urgency(referral.urgency),
        )


@queue.on(CaseSteppedDown)
def _stepped_down(conn, event: CaseSteppedDown, meta: EventMeta) -> None:
    settings = allocation_settings()
    registry.seed_if_empty(conn, settings.registry_file, utc_now())
    covered = registry.load(conn).locality_for_postcode(event.children[0].postcode)
    closed_first = _case(conn, str(event.case_id))
    if closed_first is not None:
        conn.execute(
            delete(allocation_cases).where(allocation_cases.c.case_id == str(event.case_id))
        )
    conn.execute(
        _INSERT_CASE,
        {
            "case_id": str(event.case_id),
            "family_id": str(event.family_id),
            "referral_id": None,
            "source": "step_down",
            # Where the family lives decides; social care's suggestion only when the
            # postcode is outside every locality.
            "locality": covered or event.locality,
            # A family leaving social care must not wait behind routine referrals:
            # the step-down is agreed and support has to continue without a gap.
            "urgency": Urgency.URGENT.value,
            "urgency_rank": URGENCY_RANK[Urgency.URGENT],
            "children_dates_of_birth": _joined(child.date_of_birth for child in event.children),
            "concern_factors": "",
            "queued_at": event.stepped_down_at,
            "status": "closed" if closed_first is not None else "unallocated",
            "closed_at": closed_first.closed_at if closed_first is not None else None,
        },
    )


@queue.on(CaseAllocated)
def _allocated(conn, event: CaseAllocated, meta: EventMeta) -> None:
    existing = _case(conn, str(event.case_id))
    conn.execute(
        update(allocation_cases)
        .where(allocation_cases.c.case_id == str(event.case_id))
        .values(
            status="allocated",
            locality=event.locality,
            worker_id=str(event.lead_professional.worker_id),
            team_id=event.team_id,
            lead_professional_name=event.lead_professional.name,
            allocated_at=event.allocated_at,
            first_allocated_at=(
                existing.first_allocated_at
                if existing is not None and existing.first_allocated_at is not None
                else event.allocated_at
            ),
        )
    )


# The source of a case whose closure arrived before what opened it.
_CLOSED_BEFORE_QUEUED = "closed_early"


@queue.on(CaseClosed)
def _closed(conn, event: CaseClosed, meta: EventMeta) -> None:
    if _case(conn, str(event.case_id)) is None:
        conn.execute(
            _INSERT_CASE,
            {
                "case_id": str(event.case_id),
                "family_id": str(event.family_id),
                "referral_id": None,
                "source": _CLOSED_BEFORE_QUEUED,
                "locality": None,
                "urgency": Urgency.ROUTINE.value,
                "urgency_rank": URGENCY_RANK[Urgency.ROUTINE],
                "children_dates_of_birth": "",
                "concern_factors": "",
                "queued_at": event.closed_at,
                "status": "closed",
                "closed_at": event.closed_at,
            },
        )
        return
    conn.execute(
        update(allocation_cases)
        .where(allocation_cases.c.case_id == str(event.case_id))
        .values(status="closed", closed_at=event.closed_at)
    )


# --- panels -------------------------------------------------------------------------

agendas = Projection("panel_agendas", [panel_agenda, panel_decisions])


def next_panel(conn, locality: str, on_or_after) -> str | None:
    """The locality's first panel meeting on or after a day."""
    return conn.execute(
        select(panels.c.panel_id)
        .where(panels.c.locality == locality, panels.c.meets_on >= on_or_after)
        .order_by(panels.c.meets_on, panels.c.panel_id)
        .limit(1)
    ).scalar()


@agendas.on(AssessmentCompleted)
def _assessed(conn, event: AssessmentCompleted, meta: EventMeta) -> None:
    case = _case(conn, str(event.case_id))
    locality = case.locality if case is not None else None
    conn.execute(
        insert(panel_agenda),
        {
            "case_id": str(event.case_id),
            "assessment_id": str(event.assessment_id),
            "family_id": str(event.family_id),
            "panel_id": next_panel(conn, locality, event.completed_at.date()) if locality else None,
            "locality": locality,
            "completed_at": event.completed_at,
            "status": "awaiting",
        },
    )


@agendas.on(ReferralTriaged)
def _agenda_locality(conn, event: ReferralTriaged, meta: EventMeta) -> None:
    """An assessment that arrived before its case's triage waits for a locality's panel."""
    if event.route is not TriageRoute.EARLY_HELP or event.locality is None:
        return
    waiting = conn.execute(
        select(panel_agenda).where(
            panel_agenda.c.case_id == str(event.case_id), panel_agenda.c.locality.is_(None)
        )
    ).all()
    for row in waiting:
        conn.execute(
            update(panel_agenda)
            .where(
                panel_agenda.c.case_id == row.case_id,
                panel_agenda.c.assessment_id == row.assessment_id,
            )
            .values(
                locality=event.locality,
                panel_id=next_panel(conn, event.locality, row.completed_at.date()),
            )
        )


@agendas.on(PanelDecisionRecorded)
def _decided(conn, event: PanelDecisionRecorded, meta: EventMeta) -> None:
    conn.execute(
        update(panel_agenda)
        .where(
            panel_agenda.c.case_id == str(event.case_id),
            panel_agenda.c.panel_id == str(event.panel_id),
        )
        .values(status="decided")
    )
    conn.execute(
        insert(panel_decisions),
        {
            "panel_id": str(event.panel_id),
            "case_id": str(event.case_id),
            "family_id": str(event.family_id),
            "decided_at": event.decided_at,
            "review_date": event.review_date,
            "worker_id": str(event.lead_professional.worker_id),
            "lead_professional_name": event.lead_professional.name,
            "package": json.dumps([item.model_dump(mode="json") for item in event.package]),
            "members_present": json.dumps(
                [member.model_dump(mode="json") for member in event.members_present]
            ),
        },
    )


# --- providers' places --------------------------------------------------------------

places = Projection("provider_capacity", [commissioned_places])


@places.on(PanelDecisionRecorded)
def _places_taken(conn, event: PanelDecisionRecorded, meta: EventMeta) -> None:
    rows = [
        {
            "panel_id": str(event.panel_id),
            "case_id": str(event.case_id),
            "item": index,
            "provider_id": item.provider_id,
            "service": item.service,
            "taken_at": event.decided_at,
        }
        for index, item in enumerate(event.package)
        if item.commissioned
    ]
    if rows:
        conn.execute(insert(commissioned_places), rows)


@places.on(CaseClosed)
def _places_released(conn, event: CaseClosed, meta: EventMeta) -> None:
    conn.execute(
        update(commissioned_places)
        .where(
            commissioned_places.c.case_id == str(event.case_id),
            commissioned_places.c.released_at.is_(None),
        )
        .values(released_at=event.closed_at)
    )


PROJECTIONS = (incoming, queue, agendas, places)
