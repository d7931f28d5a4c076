"""Case plan's read models: the single chronology of every family."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Index, MetaData, String, Table, Text, insert

from hub.contracts.codes import TriageRoute
from hub.contracts.intake import ReferralReceived, ReferralTriaged, ReferralWithdrawn
from hub.projections import EventMeta, Projection
from hub.sql import UtcDateTime

metadata = MetaData()

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

chronology = Projection("chronology", [chronology_entries])
_INSERT_ENTRY = insert(chronology_entries)


def _record(conn, meta: EventMeta, *, actor: str | None, summary: str) -> None:
    conn.execute(
        _INSERT_ENTRY,
        {
            "event_id": meta.event_id,
            "family_id": meta.family_id,
            "occurred_at": meta.occurred_at,
            "recorded_at": datetime.now(UTC),
            "event_type": meta.event_type,
            "service": meta.producer,
            "subject": meta.subject,
            "actor": actor,
            "summary": summary,
        },
    )


@chronology.on(ReferralReceived)
def _referral_received(conn, event: ReferralReceived, meta: EventMeta) -> None:
    referrer = event.referrer
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


PROJECTIONS = (chronology,)
