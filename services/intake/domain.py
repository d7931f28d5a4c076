"""The referral aggregate: pure decisions and state, no I/O.

A referral is received, then either triaged by the front door or withdrawn by
its referrer; both end the front door's part, so neither can follow the other.
Everything a decision needs from outside (ids, clocks, the caller) comes in the
command, so the same command on the same history always decides the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from hub.contracts.base import EventData
from hub.contracts.codes import LevelOfNeed, ReferralSource, TriageRoute, Urgency
from hub.contracts.common import (
    Child,
    Concerns,
    Consent,
    HouseholdMember,
    Referrer,
    SafeguardingOverride,
)
from hub.contracts.intake import ReferralReceived, ReferralTriaged, ReferralWithdrawn


class ReferralRuleBroken(Exception):
    """A command the referral's current state does not allow."""


class AlreadyTriaged(ReferralRuleBroken):
    """The front door has decided on the referral already."""


class AlreadyWithdrawn(ReferralRuleBroken):
    """The referrer withdrew the referral."""


class ReferralNotFound(Exception):
    """No such referral, or none the caller may act on (it is not told which)."""


class InvalidTriage(ValueError):
    """A triage decision that is inconsistent in itself, whatever the referral's state."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ReferralStatus(StrEnum):
    RECEIVED = "received"
    TRIAGED = "triaged"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class Referral:
    referral_id: UUID
    family_id: UUID
    status: ReferralStatus
    version: int
    referrer_organisation_id: str | None = None
    case_id: UUID | None = None


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


@dataclass(frozen=True)
class TriageReferral:
    """A front-door decision on a referral.

    `new_case_id` is the id the case gets if the decision opens one (route
    early_help); the caller makes it, so that deciding stays free of side effects.
    """

    referral_id: UUID
    level_of_need: LevelOfNeed
    route: TriageRoute
    locality: str | None
    rationale: str
    decided_by: str
    decided_at: datetime
    new_case_id: UUID


@dataclass(frozen=True)
class WithdrawReferral:
    """The referring organisation takes its referral back before the front door decided."""

    referral_id: UUID
    organisation_id: str
    withdrawn_by: str
    reason: str
    withdrawn_at: datetime


def stream_id(referral_id: UUID) -> str:
    return f"referral-{referral_id}"


def receive(current: Referral | None, command: ReceiveReferral) -> list[EventData]:
    if current is not None:
        raise ReferralRuleBroken(f"referral {command.referral_id} already exists")
    return [ReferralReceived(**vars(command), matched_existing_family=False)]


def triage(current: Referral | None, command: TriageReferral) -> list[EventData]:
    if current is None:
        raise ReferralNotFound(str(command.referral_id))
    early_help = command.route is TriageRoute.EARLY_HELP
    if early_help and command.locality is None:
        raise InvalidTriage("locality", "is required when route is early_help")
    if not early_help and command.locality is not None:
        raise InvalidTriage("locality", "is only given when route is early_help")
    _still_awaiting_triage(current, "triaged")
    return [
        ReferralTriaged(
            referral_id=current.referral_id,
            family_id=current.family_id,
            level_of_need=command.level_of_need,
            route=command.route,
            locality=command.locality,
            case_id=command.new_case_id if early_help else None,
            rationale=command.rationale,
            decided_by=command.decided_by,
            decided_at=command.decided_at,
        )
    ]


def withdraw(current: Referral | None, command: WithdrawReferral) -> list[EventData]:
    # Another organisation's referral is as unknown to it as one that does not exist.
    if (
        current is None
        or current.referrer_organisation_id is None
        or current.referrer_organisation_id != command.organisation_id
    ):
        raise ReferralNotFound(str(command.referral_id))
    _still_awaiting_triage(current, "withdrawn")
    return [
        ReferralWithdrawn(
            referral_id=current.referral_id,
            family_id=current.family_id,
            withdrawn_at=command.withdrawn_at,
            withdrawn_by=command.withdrawn_by,
            reason=command.reason,
        )
    ]


def _still_awaiting_triage(current: Referral, action: str) -> None:
    if current.status is ReferralStatus.TRIAGED:
        raise AlreadyTriaged(
            f"referral {current.referral_id} has already been triaged and cannot be {action}"
        )
    if current.status is ReferralStatus.WITHDRAWN:
        raise AlreadyWithdrawn(
            f"referral {current.referral_id} was withdrawn by its referrer and cannot be {action}"
        )


def apply(current: Referral | None, event: EventData) -> Referral:
    if isinstance(event, ReferralReceived):
        if current is not None:
            raise ReferralRuleBroken(f"referral {event.referral_id} was received twice")
        return Referral(
            event.referral_id,
            event.family_id,
            ReferralStatus.RECEIVED,
            version=1,
            referrer_organisation_id=event.referrer.organisation_id if event.referrer else None,
        )
    if current is None:
        raise ReferralRuleBroken(f"{event.event_type} before the referral was received")
    version = current.version + 1
    if isinstance(event, ReferralTriaged):
        return replace(
            current, status=ReferralStatus.TRIAGED, case_id=event.case_id, version=version
        )
    if isinstance(event, ReferralWithdrawn):
        return replace(current, status=ReferralStatus.WITHDRAWN, version=version)
    raise ReferralRuleBroken(f"a referral does not follow {event.event_type}")


def replay(events: Iterable[EventData]) -> Referral | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
