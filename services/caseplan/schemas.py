"""What case plan answers about families."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field


class ChronologyEntry(BaseModel):
    event_id: UUID
    event_type: str = Field(examples=["earlyhelp.referral.received.v1"])
    occurred_at: datetime = Field(description="When it happened, by the service that recorded it.")
    recorded_at: datetime = Field(description="When the chronology learnt of it.")
    service: str = Field(description="The service that recorded it.", examples=["intake"])
    subject: str | None = Field(description="The referral or case it is about.")
    actor: str | None = Field(description="Who did it, as far as the event says.")
    summary: str


class Chronology(BaseModel):
    family_id: UUID
    entries: list[ChronologyEntry]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; absent on the last page."
    )
