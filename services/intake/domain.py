"""The referral aggregate: pure decisions and state, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from hub.contracts.base import EventData
from hub.contracts.codes import ReferralSource, Urgency
from hub.contracts.common import (
    Child,
    Concerns,
    Consent,
    HouseholdMember,
    Referrer,
    SafeguardingOverride,
)
from hub.contracts.intake import ReferralReceived


class ReferralRuleBroken(Exception):
    """A command the referral's current state does not allow."""


class ReferralStatus(StrEnum):
    RECEIVED = "received"


@dataclass(frozen=True)
class Referral:
    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    version: int


@dataclass(frozen=True)
class ReceiveReferral:
    """A partner's referral, with the identities the hub gave it and its people."""

    referral_id: UUID
    family_id: UUID
    received_at: datetime
    referral_source: ReferralSource
    referrer: Referrer | None
    partner_reference: str | None
    urgency: Urgency
    children: tuple[Child, ...]
    household_members: tuple[HouseholdMember, ...]
    concerns: Concerns
    consent: Consent | None
    safeguarding_override: SafeguardingOverride | None


def stream_id(referral_id: UUID) -> str:
    return f"referral-{referral_id}"


def receive(current: Referral | None, command: ReceiveReferral) -> list[EventData]:
    if current is not None:
        raise ReferralRuleBroken(f"referral {command.referral_id} already exists")
    return [ReferralReceived(**vars(command), matched_existing_family=False)]


def apply(current: Referral | None, event: EventData) -> Referral:
    version = (current.version if current else 0) + 1
    if isinstance(event, ReferralReceived):
        return Referral(event.referral_id, event.family_id, ReferralStatus.RECEIVED, version)
    raise ReferralRuleBroken(f"a referral does not follow {event.event_type}")


def replay(events: Iterable[EventData]) -> Referral | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
