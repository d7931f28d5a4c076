"""Minimised at the door: the journal keeps only what some rule could share, and what is
past the retention period is purged (the disclosure record stays). On the tables
themselves, with chosen times: no clock, no waiting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from hub.contracts.caseplan import AssessmentCompleted, TeamMemberAdded
from hub.contracts.intake import ReferralReceived
from hub.settings import REPO_ROOT
from notifications.fanout import purge
from notifications.policy import SharingPolicy
from notifications.projections import journalled, keep_fields_of
from notifications.tables import deliveries, delivery_attempts, disclosures, event_journal, metadata

POLICY = SharingPolicy.load(REPO_ROOT / "config" / "sharing-policy.yaml")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_the_journal_keeps_only_what_some_rule_could_share():
    keep_fields_of(POLICY)
    referral = json.loads(journalled(ReferralReceived.event_type, ReferralReceived.example()))
    assert set(referral) == {"referral_id", "received_at", "urgency"}
    assessment = json.loads(
        journalled(AssessmentCompleted.event_type, AssessmentCompleted.example())
    )
    assert "people" not in assessment and "views" not in assessment
    assert {"case_id", "factors", "needs"} <= set(assessment)
    assert {key for need in assessment["needs"] for key in need} == {"need_id", "outcome"}
    # An event no rule shares keeps only its case.
    member = json.loads(journalled(TeamMemberAdded.event_type, TeamMemberAdded.example()))
    assert set(member) == {"case_id"}


def _delivery(n: int, created_at: datetime, status: str) -> dict:
    return {
        "id": n,
        "message_id": f"msg_{n}",
        "subscription_id": "s",
        "event_id": f"e{n}",
        "event_type": "earlyhelp.case.closed.v1",
        "family_id": "f",
        "occurred_at": created_at,
        "body": "{}",
        "status": status,
        "attempts": 1,
        "next_attempt_at": created_at,
        "created_at": created_at,
    }


def test_purge_removes_what_is_past_retention_and_keeps_the_disclosure_record(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'n.db'}")
    metadata.create_all(engine)
    old, recent = NOW - timedelta(days=91), NOW - timedelta(days=1)
    with engine.begin() as conn:
        for seq, (at, fanned) in enumerate([(old, True), (old, False), (recent, True)], 1):
            conn.execute(
                sa.insert(event_journal),
                {
                    "seq": seq,
                    "event_id": f"j{seq}",
                    "event_type": "earlyhelp.case.closed.v1",
                    "family_id": "f",
                    "occurred_at": at,
                    "journalled_at": at,
                    "data": "{}",
                    "fanned_out": fanned,
                },
            )
        for row in (
            _delivery(1, old, "delivered"),
            _delivery(2, old, "retrying"),
            _delivery(3, recent, "delivered"),
        ):
            conn.execute(sa.insert(deliveries), row)
            conn.execute(
                sa.insert(delivery_attempts),
                {
                    "delivery_id": row["id"],
                    "attempted_at": row["created_at"],
                    "outcome": "delivered",
                    "latency_ms": 1,
                },
            )
        conn.execute(
            sa.insert(disclosures),
            {
                "family_id": "f",
                "partner_id": "p",
                "subscription_id": "s",
                "channel": "webhook",
                "message_id": "msg_1",
                "event_id": "e1",
                "event_type": "earlyhelp.case.closed.v1",
                "fields": "[]",
                "rules": "",
                "basis": "consent",
                "disclosed_at": old,
            },
        )
        purge(conn, NOW - timedelta(days=90))
        journal = {r.event_id for r in conn.execute(sa.select(event_journal.c.event_id))}
        left = {r.id for r in conn.execute(sa.select(deliveries.c.id))}
        attempts = {r.delivery_id for r in conn.execute(sa.select(delivery_attempts))}
        kept = conn.execute(sa.select(sa.func.count()).select_from(disclosures)).scalar()
    # Old and fanned out: gone; old but not yet fanned out, or recent: kept.
    assert journal == {"j2", "j3"}
    # A settled old delivery and its attempts: gone; one still retrying stays.
    assert left == attempts == {2, 3}
    assert kept == 1
