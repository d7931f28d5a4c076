"""Consultations, the front door's contacts that are not referrals: pure decisions and state.

A practitioner in a universal service (a school, a GP, a health visitor) asks the
front door for advice about a child or family, named or not, without referring
them. The front door records its advice once. When the advice is to refer, the
practitioner who asked may turn the consultation into a referral: the referral is
received as any other, and the consultation keeps its id (`ConsultationReferred`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from hub.contracts.base import EventData
from hub.contracts.codes import CinFactor
from hub.contracts.common import Referrer
from hub.contracts.intake import (
    ConsultationAdvice,
    ConsultationAdvised,
    ConsultationReferred,
    ConsultationRequested,
    ConsultedChild,
)
from hub.refusals import Conflict, NotFound


class ConsultationNotFound(NotFound):
    problem = "consultation-not-found"
    title = "No such consultation"

    def __init__(self, consultation_id: UUID) -> None:
        super().__init__(
            f"No consultation {consultation_id}.", resource=("consultation", str(consultation_id))
        )


class ConsultationRuleBroken(Conflict):
    """A command the consultation's current state does not allow."""

    problem = "consultation-conflict"
    title = "Not possible now"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, problem=code)


class ConsultationStatus(StrEnum):
    AWAITING_ADVICE = "awaiting_advice"
    ADVISED = "advised"
    REFERRED = "referred"


@dataclass(frozen=True)
class Consultation:
    consultation_id: UUID
    family_id: UUID
    organisation_id: str | None
    status: ConsultationStatus
    version: int
    advice: ConsultationAdvice | None = None
    referral_id: UUID | None = None


@dataclass(frozen=True)
class RequestConsultation:
    consultation_id: UUID
    family_id: UUID
    practitioner: Referrer
    factors: tuple[CinFactor, ...]
    question: str
    children: tuple[ConsultedChild, ...]
    requested_at: datetime


@dataclass(frozen=True)
class RecordAdvice:
    consultation_id: UUID
    outcome: ConsultationAdvice
    advice: str
    advised_by: str
    advised_at: datetime


@dataclass(frozen=True)
class ReferAsAdvised:
    consultation_id: UUID
    organisation_id: str | None  # the caller's
    referral_id: UUID
    referred_at: datetime


def stream_id(consultation_id: UUID) -> str:
    return f"consultation-{consultation_id}"


def request(command: RequestConsultation) -> list[EventData]:
    return [
        ConsultationRequested(
            consultation_id=command.consultation_id,
            family_id=command.family_id,
            requested_at=command.requested_at,
            practitioner=command.practitioner,
            factors=command.factors,
            question=command.question,
            anonymous=not command.children,
            children=command.children,
        )
    ]


def advise(current: Consultation | None, command: RecordAdvice) -> list[EventData]:
    """The front door advises once: a second advice is a 409 (`consultation-advised`)."""
    if current is None:
        raise ConsultationNotFound(command.consultation_id)
    if current.status is not ConsultationStatus.AWAITING_ADVICE:
        raise ConsultationRuleBroken(
            "consultation-advised", f"consultation {current.consultation_id} was advised already"
        )
    return [
        ConsultationAdvised(
            consultation_id=current.consultation_id,
            family_id=current.family_id,
            advised_at=command.advised_at,
            advised_by=command.advised_by,
            outcome=command.outcome,
            advice=command.advice,
        )
    ]


def refer(current: Consultation | None, command: ReferAsAdvised) -> list[EventData]:
    """Only the organisation that asked, only after advice to refer, and once."""
    if current is None or current.organisation_id != command.organisation_id:
        raise ConsultationNotFound(command.consultation_id)
    if current.status is ConsultationStatus.REFERRED:
        raise ConsultationRuleBroken(
            "consultation-referred",
            f"consultation {current.consultation_id} became referral {current.referral_id}",
        )
    if current.advice is not ConsultationAdvice.REFER:
        advised = "no advice yet" if current.advice is None else f"advice {current.advice.value}"
        raise ConsultationRuleBroken(
            "consultation-not-advised-to-refer",
            f"consultation {current.consultation_id} has {advised}; a referral follows "
            "advice to refer (otherwise make a referral of its own)",
        )
    return [
        ConsultationReferred(
            consultation_id=current.consultation_id,
            family_id=current.family_id,
            referral_id=command.referral_id,
            referred_at=command.referred_at,
        )
    ]


def apply(current: Consultation | None, event: EventData) -> Consultation:
    if isinstance(event, ConsultationRequested):
        return Consultation(
            event.consultation_id,
            event.family_id,
            event.practitioner.organisation_id,
            ConsultationStatus.AWAITING_ADVICE,
            version=1,
        )
    if current is None:
        raise ValueError(f"{event.event_type} before its consultation was requested")
    current = replace(current, version=current.version + 1)
    if isinstance(event, ConsultationAdvised):
        return replace(current, status=ConsultationStatus.ADVISED, advice=event.outcome)
    if isinstance(event, ConsultationReferred):
        return replace(current, status=ConsultationStatus.REFERRED, referral_id=event.referral_id)
    raise ValueError(f"a consultation does not follow {event.event_type}")


def replay(events: Iterable[EventData]) -> Consultation | None:
    state = None
    for event in events:
        state = apply(state, event)
    return state
