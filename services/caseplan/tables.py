"""Case plan's tables that are not read models: nothing replays into them, no rebuild drops them."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from hub.sql import UtcDateTime

metadata = MetaData()

# Families whose records the retention schedule must not dispose of (legal hold):
# placed and lifted by information governance, each with its reason. Case plan owns
# the decision about when a family's case records fall due, so it owns the holds.
legal_holds = Table(
    "legal_holds",
    metadata,
    Column("family_id", String(36), primary_key=True),
    Column("reason", String(500), nullable=False),
    Column("placed_by", String(200), nullable=False),
    Column("placed_at", UtcDateTime(), nullable=False),
)
