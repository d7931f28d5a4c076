"""Tables the hub library keeps in every service's database.

Each service's first Alembic migration creates them with `create_hub_tables`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hub.observability import TRACESTATE_MAX_CHARS
from hub.sql import UtcDateTime

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
Position = BigInteger().with_variant(Integer(), "sqlite")

event_store = Table(
    "event_store",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("event_type", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("family_id", String(36), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("data", Text, nullable=False),
    Column("actor", String(200), nullable=True),
    Column("traceparent", String(55), nullable=True),
    Column("tracestate", String(TRACESTATE_MAX_CHARS), nullable=True),
    # (v2) The id of the family's event this one follows, as the service knew the family
    # when it decided (its own events and those it consumed): the CloudEvent's `follows`.
    Column("follows", String(36), nullable=True),
    UniqueConstraint("stream_id", "stream_version", name="uq_event_store_stream_version"),
)
Index("ix_event_store_family", event_store.c.family_id, event_store.c.position)

# (v2) The latest event of each family the service knows, its own or consumed: the event
# the service's next event of the family follows.
family_heads = Table(
    "family_heads",
    metadata,
    Column("family_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=False),
    Column("topic", String(249), nullable=False),
    Column("enqueued_at", UtcDateTime(), nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("projection", String(100), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("handled_at", UtcDateTime(), nullable=False),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("projection", String(100), primary_key=True),
    # "store" for the service's own events, "<topic>/<partition>" for Kafka.
    Column("source", String(300), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    Column("response_headers", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# Reads of children's records: who, what, when (a child's data is only ever read on record).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("actor_kind", String(20), nullable=False),
    Column("action", String(50), nullable=False),
    Column("resource_type", String(50), nullable=False),
    Column("resource_id", String(200), nullable=False),
    Column("trace_id", String(32), nullable=True),
)
