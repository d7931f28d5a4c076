"""Webhook signing secrets encrypted at rest.

`subscriptions.secret` and `previous_secret` (the secrets as issued) become
`secret_encrypted` and `previous_secret_encrypted` (Fernet tokens under the keys
of EARLYHELP_NOTIFICATIONS_SECRET_KEYS, or the embedded default's key file).
Existing secrets are encrypted in place, and so is the secret in every stored
response to a create or rotation with an Idempotency-Key. The keys are needed
only when there is something to encrypt (or, going down, to decrypt).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PLAIN = ("secret", "previous_secret")
SEALED = ("secret_encrypted", "previous_secret_encrypted")


def _box(conn):
    # Imported here: only a database holding secrets needs the keys (and the library).
    from hub.settings import HubSettings
    from notifications.encryption import secret_box
    from notifications.settings import NotificationsSettings

    embedded = conn.dialect.name == "sqlite"
    return secret_box(NotificationsSettings(), HubSettings().var_dir, embedded=embedded)


def _convert(conn, source: tuple[str, str], target: tuple[str, str], change) -> None:
    subscriptions = sa.table(
        "subscriptions", sa.column("subscription_id"), *(sa.column(c) for c in source + target)
    )
    rows = conn.execute(
        sa.select(subscriptions).where(sa.or_(*(subscriptions.c[c].is_not(None) for c in source)))
    ).all()
    for row in rows:
        values = {
            new: None if row._mapping[old] is None else change(row._mapping[old])
            for old, new in zip(source, target, strict=True)
        }
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.subscription_id == row.subscription_id)
            .values(values)
        )


def _stored_responses(conn, change, is_candidate) -> None:
    """The `secret` of each stored response that holds one (creates and rotations)."""
    keys = sa.table(
        "idempotency_keys",
        sa.column("principal"),
        sa.column("idempotency_key"),
        sa.column("response_body"),
    )
    rows = conn.execute(sa.select(keys).where(keys.c.response_body.like('%"secret":"%'))).all()
    for row in rows:
        body = json.loads(row.response_body)
        if not isinstance(body, dict) or not is_candidate(body.get("secret")):
            continue
        body["secret"] = change(body["secret"])
        conn.execute(
            sa.update(keys)
            .where(
                keys.c.principal == row.principal,
                keys.c.idempotency_key == row.idempotency_key,
            )
            .values(response_body=json.dumps(body, separators=(",", ":"), ensure_ascii=False))
        )


def _needs_keys(conn, columns: tuple[str, ...]) -> bool:
    held = " OR ".join(f"{c} IS NOT NULL" for c in columns)
    subscriptions = conn.execute(sa.text(f"SELECT count(*) FROM subscriptions WHERE {held}"))
    responses = conn.execute(
        sa.text("SELECT count(*) FROM idempotency_keys WHERE response_body LIKE :secret"),
        {"secret": '%"secret":"%'},
    )
    return bool(subscriptions.scalar_one() or responses.scalar_one())


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        for column in SEALED:
            batch.add_column(sa.Column(column, sa.Text, nullable=True))
    conn = op.get_bind()
    if _needs_keys(conn, PLAIN):
        box = _box(conn)
        _convert(conn, PLAIN, SEALED, box.seal)

        def plain(value) -> bool:
            return isinstance(value, str) and value.startswith("whsec_")

        _stored_responses(conn, box.seal, plain)
    with op.batch_alter_table("subscriptions") as batch:
        for column in PLAIN:
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        for column in PLAIN:
            batch.add_column(sa.Column(column, sa.String(100), nullable=True))
    conn = op.get_bind()
    if _needs_keys(conn, SEALED):
        box = _box(conn)
        _convert(conn, SEALED, PLAIN, box.open)

        def sealed(value) -> bool:
            return isinstance(value, str) and not value.startswith("whsec_")

        _stored_responses(conn, box.open, sealed)
    with op.batch_alter_table("subscriptions") as batch:
        for column in SEALED:
            batch.drop_column(column)
