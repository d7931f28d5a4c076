"""Alembic, run the same way for every service: `earlyhelp migrate <service>`.

Each service keeps its own migrations folder; its `env.py` calls `run_env` and
its first revision calls `create_hub_tables_v1`. The hub's tables are spelled
out here, revision by revision, so that an old migration never changes when the
library's tables do.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.operations import Operations
from sqlalchemy import MetaData, pool


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    _ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def downgrade(migrations_dir: Path, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(migrations_dir, database_url), revision)


def _ensure_sqlite_folder(database_url: str) -> None:
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def run_env(service_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py` (online mode only)."""
    from hub.tables import metadata as hub_metadata

    url = context.config.get_main_option("sqlalchemy.url")
    engine = sa.create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=[hub_metadata, service_metadata],
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


_POSITION = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def create_hub_tables_v1(op: Operations) -> None:
    op.create_table(
        "event_store",
        sa.Column("position", _POSITION, primary_key=True, autoincrement=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("family_id", sa.String(36), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("traceparent", sa.String(55), nullable=True),
        sa.Column("tracestate", sa.String(512), nullable=True),
        sa.UniqueConstraint("stream_id", "stream_version", name="uq_event_store_stream_version"),
    )
    op.create_index("ix_event_store_family", "event_store", ["family_id", "position"])
    op.create_table(
        "outbox",
        sa.Column("position", _POSITION, primary_key=True, autoincrement=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("projection", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "projection_checkpoints",
        sa.Column("projection", sa.String(100), primary_key=True),
        sa.Column("source", sa.String(300), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response_body", sa.Text, nullable=False),
        sa.Column("response_headers", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_hub_tables_v1(op: Operations) -> None:
    for table in ("idempotency_keys", "projection_checkpoints", "inbox", "outbox"):
        op.drop_table(table)
    op.drop_index("ix_event_store_family", table_name="event_store")
    op.drop_table("event_store")


def create_audit_log_v1(op: Operations) -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(20), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("resource_type", sa.String(50), nullable=False),
        sa.Column("resource_id", sa.String(200), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=True),
    )


def drop_audit_log_v1(op: Operations) -> None:
    op.drop_table("audit_log")


def add_family_order_v2(op: Operations) -> None:
    """Each event names the family's event it follows (`event_store.follows`), from the
    latest event of each family the service knows (`family_heads`)."""
    with op.batch_alter_table("event_store") as batch:
        batch.add_column(sa.Column("follows", sa.String(36), nullable=True))
    op.create_table(
        "family_heads",
        sa.Column("family_id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )


def drop_family_order_v2(op: Operations) -> None:
    op.drop_table("family_heads")
    with op.batch_alter_table("event_store") as batch:
        batch.drop_column("follows")
