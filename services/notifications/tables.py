"""Notifications' tables.

Two kinds. The read models in `projections.py` (the event journal and the facts
about each family that the sharing policy needs) are rebuilt by replay. The
tables here are the service's own state, which no replay could recreate:
subscriptions, the deliveries and their attempt log, endpoints' circuit state
and e-mails sent; a rebuild never touches them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

from hub.observability import TRACESTATE_MAX_CHARS
from hub.sql import UtcDateTime
from hub.tables import Position

metadata = MetaData()

# --- read models (rebuildable; see projections.py) ----------------------------------

# Every event the service consumed, as published, in the order it was consumed:
# the source of fan-out and of replays from a point in time.
# The projection that keeps the journal: its inbox says which events have been consumed.
JOURNAL_PROJECTION = "referral_feedback"

event_journal = Table(
    "event_journal",
    metadata,
    Column("seq", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("event_type", String(200), nullable=False),
    Column("family_id", String(36), nullable=False, index=True),
    Column("subject", String(200), nullable=True),
    # The case the event is about, if any: it waits until the case's opening is known.
    Column("case_id", String(36), nullable=True),
    Column("occurred_at", UtcDateTime(), nullable=False, index=True),
    Column("journalled_at", UtcDateTime(), nullable=False),
    Column("data", Text, nullable=False),
    # Fanned out to the subscriptions and e-mail recipients of the moment.
    Column("fanned_out", Boolean, nullable=False),
    # The W3C trace context of the consumer's span for the event: its deliveries carry
    # it on, so their webhook attempts belong to the referral's trace.
    Column("traceparent", String(55), nullable=True),
    Column("tracestate", String(TRACESTATE_MAX_CHARS), nullable=True),
    # (0010) The family's event this one follows (hub.family_order): fan-out waits for it.
    Column("follows", String(36), nullable=True),
)
Index("ix_event_journal_pending", event_journal.c.fanned_out, event_journal.c.seq)

# What each referral tells the policy: who referred, under what consent, which case.
referral_facts = Table(
    "referral_facts",
    metadata,
    Column("referral_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("referrer_id", String(64), nullable=True, index=True),
    Column("partner_reference", String(200), nullable=True),
    Column("referrer_email", String(254), nullable=True),
    Column("case_id", String(36), nullable=True, index=True),
    Column("consent_to_share", Boolean, nullable=False),
    Column("safeguarding_override", Boolean, nullable=False),
    # (0007) False while only later events of the referral have arrived (a triage keyed
    # by a family it was moved to can overtake it): the row then holds the case, not yet
    # who referred, and fan-out holds back the referral's events until it is true.
    Column("received", Boolean, nullable=False, server_default=true()),
    # When the front door last moved the referral to another family: the latest move
    # decides the family, whatever order the moves and the referral arrive in.
    Column("family_moved_at", UtcDateTime(), nullable=True),
    # (0008) When its triage opened or joined `case_id`: the referral's consent and
    # override stand for the case until case plan records the case's own.
    Column("triaged_at", UtcDateTime(), nullable=True),
)

family_facts = Table(
    "family_facts",
    metadata,
    Column("family_id", String(36), primary_key=True),
    # Unused since 0008 (consent is per case now: `case_consents`); kept for old rows.
    Column("consent_withdrawn", Boolean, nullable=False),
)

# (0008) The team around the family of each case: one row per membership period.
team_members = Table(
    "team_members",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("member_id", String(64), primary_key=True),
    Column("added_at", UtcDateTime(), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("removed_at", UtcDateTime(), nullable=True),
)

# (0008) The consent case plan recorded for a case, as it stands after the latest
# recording, narrowing or withdrawal (JSON list of ConsentScope values; empty: withdrawn).
case_consents = Table(
    "case_consents",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("purposes", Text, nullable=False),
    Column("set_at", UtcDateTime(), nullable=False),
)

# (0008) The case's safeguarding override, as its latest decision left it.
case_overrides = Table(
    "case_overrides",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("state", String(10), nullable=False),  # recorded | ended
    Column("review_date", Date, nullable=True),
    Column("set_at", UtcDateTime(), nullable=False),
)

# (0008) The schools staff recorded for a case's children.
case_schools = Table(
    "case_schools",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("school_id", String(64), primary_key=True),
    Column("family_id", String(36), nullable=False),
)

# Every case whose opening (a triage to early help, a step-down) has been consumed.
known_cases = Table(
    "known_cases",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
)

# Each open case's next review and lead professional, for the reminder e-mail.
case_reviews = Table(
    "case_reviews",
    metadata,
    Column("case_id", String(36), primary_key=True),
    Column("family_id", String(36), nullable=False),
    Column("review_date", Date, nullable=True, index=True),
    Column("lead_name", String(100), nullable=True),
    Column("lead_email", String(254), nullable=True),
    # (0007) When the events that set the review date and the lead happened: a panel's
    # decision, a review and a closure come on different topics, and the latest decides.
    Column("review_set_at", UtcDateTime(), nullable=True),
    Column("lead_set_at", UtcDateTime(), nullable=True),
)

# --- the service's own state ---------------------------------------------------------

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(36), primary_key=True),
    Column("partner_id", String(64), nullable=False, index=True),
    Column("partner_type", String(30), nullable=True),
    # JSON list of exact event types and prefixes ending in ".*".
    Column("event_types", Text, nullable=False),
    Column("channel", String(20), nullable=False),  # webhook | partner_topic
    Column("url", String(2000), nullable=True),
    # What a circuit breaker guards: scheme://host:port of the URL, or kafka://<topic>.
    Column("endpoint", String(300), nullable=False),
    Column("topic", String(249), nullable=True),
    # The signing secret (whsec_...) encrypted with Fernet under the configured keys
    # (notifications.encryption): HMAC needs the secret itself, so it cannot be hashed.
    Column("secret_encrypted", Text, nullable=True),
    Column("previous_secret_encrypted", Text, nullable=True),
    Column("previous_secret_until", UtcDateTime(), nullable=True),
    Column("status", String(10), nullable=False),  # active | paused
    Column("paused_reason", String(20), nullable=True),  # partner | endpoint_gone
    Column("description", String(200), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    # The webhook-id: one per subscription and event, however often it is sent.
    Column("message_id", String(64), nullable=False, unique=True),
    Column("subscription_id", String(36), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("family_id", String(36), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
    # The CloudEvent as the partner receives it (structured JSON, minimised data).
    Column("body", Text, nullable=False),
    # pending | retrying | delivered | failed | withheld (the policy no longer lets it go)
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("first_attempt_at", UtcDateTime(), nullable=True),
    Column("last_attempt_at", UtcDateTime(), nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("delivered_at", UtcDateTime(), nullable=True),
    Column("leased_until", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    # The event's trace context, from the journal: each attempt's span is its child.
    Column("traceparent", String(55), nullable=True),
    Column("tracestate", String(TRACESTATE_MAX_CHARS), nullable=True),
    UniqueConstraint("subscription_id", "event_id", name="uq_deliveries_subscription_event"),
)
Index("ix_deliveries_due", deliveries.c.status, deliveries.c.next_attempt_at)
Index(
    "ix_deliveries_family_order",
    deliveries.c.subscription_id,
    deliveries.c.family_id,
    deliveries.c.occurred_at,
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("delivery_id", Position, nullable=False, index=True),
    Column("attempted_at", UtcDateTime(), nullable=False),
    Column("outcome", String(20), nullable=False),  # delivered | failed | withheld
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=False),
    Column("error", String(500), nullable=True),
)

# (0008) Every send of restricted detail to a partner: what, to whom, when, under which
# consent or override and by which rule. Kept when deliveries are purged: it is the
# authority's record of disclosures, read by its data protection officer.
disclosures = Table(
    "disclosures",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("family_id", String(36), nullable=False, index=True),
    Column("case_id", String(36), nullable=True),
    Column("partner_id", String(64), nullable=False),
    Column("subscription_id", String(36), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(200), nullable=False),
    # JSON list of the restricted fields sent, as policy paths.
    Column("fields", Text, nullable=False),
    # The restricted rules that let them out (`condition/category`), comma-separated.
    Column("rules", String(500), nullable=False),
    # consent | override | agreement | statutory_duty
    Column("basis", String(20), nullable=False),
    Column("disclosed_at", UtcDateTime(), nullable=False),
)

# The circuit breaker of each webhook endpoint.
endpoints = Table(
    "endpoints",
    metadata,
    Column("endpoint", String(300), primary_key=True),
    Column("state", String(10), nullable=False),  # closed | open | half_open
    Column("consecutive_failures", Integer, nullable=False),
    # Open: when a probe may go. Half-open: when an unanswered probe counts as lost.
    Column("open_until", UtcDateTime(), nullable=True),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# One row per message and recipient: the same event never e-mails anyone twice.
emails = Table(
    "emails",
    metadata,
    Column("message_key", String(120), primary_key=True),
    Column("recipient", String(254), primary_key=True),
    Column("template", String(50), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(10), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("leased_until", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    # (0009) For an e-mail holding restricted detail (an Operation Encompass notice to a
    # school's safeguarding lead): the disclosure record's row, as JSON, written when it
    # is sent.
    Column("disclosure", Text, nullable=True),
)
Index("ix_emails_due", emails.c.status, emails.c.next_attempt_at)
