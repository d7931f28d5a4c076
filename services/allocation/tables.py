"""Allocation's state that is not rebuilt from events: the registry and the panel calendar.

Both are configuration that managers and panel chairs keep, not history: every
change to them is written to the audit log (who, when, what) in the same
transaction. Everything in `projections.py` is rebuildable; these tables are not,
so a replay never touches them.
"""

from __future__ import annotations

from sqlalchemy import Column, Date, Index, MetaData, String, Table, Text

from hub.sql import UtcDateTime

metadata = MetaData()

# One row per registry entry (authority, locality, team, worker or provider), the
# entry itself as the JSON of its model in `allocation.registry`.
registry_entries = Table(
    "registry_entries",
    metadata,
    Column("kind", String(20), primary_key=True),
    Column("entry_id", String(64), primary_key=True),
    Column("authority_id", String(64), nullable=False),
    Column("document", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(200), nullable=False),
)

panels = Table(
    "panels",
    metadata,
    Column("panel_id", String(36), primary_key=True),
    Column("locality", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("meets_on", Date, nullable=False),
    # The agencies expected at the meeting, as JSON: [{"name": ..., "agency": ...}].
    Column("members", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(200), nullable=False),
)
Index("ix_panels_locality_date", panels.c.locality, panels.c.meets_on)
