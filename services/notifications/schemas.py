"""What partners send to and receive from the notifications service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hub.contracts.common import IsoDateTime

_SUBSCRIPTION = "8f14e45f-ceea-4e7a-9b8c-2d1f3a4b5c6d"

# Read exactly as sent, as the pattern says: " earlyhelp.case.* " is refused, not trimmed.
EventTypePattern = Annotated[
    str, StringConstraints(min_length=3, max_length=200, pattern=r"^[a-z0-9_.]+(\.\*)?$")
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookDelivery(Request):
    type: Literal["webhook"]
    url: str = Field(
        min_length=8,
        max_length=2000,
        # No URL (RFC 3986) holds a space or a control character, in its host or anywhere.
        pattern=r"^[^\s\x00-\x1f\x7f]+$",
        description="Where events are POSTed; https (plain http only on the embedded default, "
        "for this machine).",
    )


class PartnerTopicDelivery(Request):
    type: Literal["partner_topic"] = Field(
        description="Events go to the partner's own topic, earlyhelp.partner.<partner_id>.v1."
    )


class SubscriptionRequest(Request):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_types": ["earlyhelp.referral.triaged.v1", "earlyhelp.case.*"],
                    "delivery": {
                        "type": "webhook",
                        "url": "https://mis.harlesden-primary.example.org/hooks/earlyhelp",
                    },
                    "description": "Safeguarding lead's dashboard",
                },
                {"event_types": ["earlyhelp.case.*"], "delivery": {"type": "partner_topic"}},
            ]
        },
    )

    event_types: list[EventTypePattern] = Field(
        min_length=1,
        max_length=50,
        description="Exact event types, or prefixes ending in `.*` such as `earlyhelp.case.*`.",
    )
    delivery: WebhookDelivery | PartnerTopicDelivery = Field(discriminator="type")
    description: str | None = Field(default=None, max_length=200)


class DeliveryTarget(BaseModel):
    type: Literal["webhook", "partner_topic"]
    url: str | None = None
    topic: str | None = None


class Subscription(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subscription_id": _SUBSCRIPTION,
                    "partner_id": "harlesden-primary-school",
                    "event_types": ["earlyhelp.referral.triaged.v1", "earlyhelp.case.*"],
                    "delivery": {
                        "type": "webhook",
                        "url": "https://mis.harlesden-primary.example.org/hooks/earlyhelp",
                    },
                    "status": "active",
                    "paused_reason": None,
                    "description": "Safeguarding lead's dashboard",
                    "created_at": "2025-03-01T09:00:00Z",
                    "updated_at": "2025-03-01T09:00:00Z",
                    "backlog": 0,
                }
            ]
        }
    )

    subscription_id: str
    partner_id: str
    event_types: list[str]
    delivery: DeliveryTarget
    status: Literal["active", "paused"]
    paused_reason: Literal["partner", "endpoint_gone"] | None = Field(
        default=None,
        description="Why deliveries are paused: `partner` (POST .../pause) or `endpoint_gone` "
        "(the webhook answered 410 Gone). Deliveries keep queueing, in order, until "
        "POST .../resume.",
    )
    description: str | None
    created_at: datetime
    updated_at: datetime
    backlog: int = Field(description="Deliveries pending or being retried.")


class SubscriptionCreated(Subscription):
    secret: str | None = Field(
        description="The webhook signing secret (whsec_...). Shown only now: store it safely. "
        "None for a partner topic."
    )


class SubscriptionList(BaseModel):
    items: list[Subscription]


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret; shown only now.")
    previous_secret_valid_until: datetime = Field(
        description="Until then each message carries a signature with the old secret too."
    )


class AttemptView(BaseModel):
    attempted_at: datetime
    outcome: Literal["delivered", "failed", "withheld"] = Field(
        description="withheld: not sent, because the sharing policy no longer allowed it."
    )
    status_code: int | None
    latency_ms: int
    error: str | None


class DeliveryView(BaseModel):
    """One delivery as its partner sees it: never the hub's family id (the event's
    `partitionkey` is the partner's own name for the family)."""

    delivery_id: str = Field(description="The webhook-id header: the same on every attempt.")
    event_id: str
    event_type: str
    occurred_at: datetime
    status: Literal["pending", "retrying", "delivered", "failed", "withheld"] = Field(
        description="failed: dead-lettered after the last retry; redeliver it when ready. "
        "withheld: not sent, because at the moment of sending the sharing policy no longer "
        "allowed it (the partner left the case's team, or the case's consent was withdrawn)."
    )
    attempts: int
    next_attempt_at: datetime | None
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None


class DeliveryDetail(DeliveryView):
    event: dict = Field(description="The CloudEvent exactly as it is sent.")
    attempt_log: list[AttemptView]


class DeliveryList(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class ReplayRequest(Request):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"since": "2025-03-01T00:00:00Z"}]}
    )

    since: IsoDateTime = Field(description="Every event from this time on is queued again.")


class ReplayQueued(BaseModel):
    queued: int = Field(description="Events the partner may receive since then, queued in order.")


class Disclosure(BaseModel):
    """One send of restricted detail to a partner."""

    disclosed_at: datetime
    partner_id: str = Field(description="The partner organisation's client id.")
    channel: Literal["webhook", "partner_topic", "email"]
    case_id: str | None
    event_id: str
    event_type: str
    delivery_id: str = Field(
        description="The webhook-id of the delivery (the Message-ID of an e-mail)."
    )
    fields: list[str] = Field(description="The restricted fields sent, as sharing-policy paths.")
    rules: list[str] = Field(description="The policy rules (condition/category) that allowed them.")
    basis: Literal["consent", "override", "agreement", "statutory_duty"] = Field(
        description="consent: the case's consent covered sharing with partner agencies; "
        "override: a live safeguarding override; statutory_duty: an Operation Encompass "
        "notice to the child's school; agreement: a restricted rule of the partner's own "
        "agreement on another condition (referrer, school of a child)."
    )


class FamilyDisclosures(BaseModel):
    family_id: str
    cases: list[str] = Field(description="The family's cases these disclosures were about.")
    items: list[Disclosure] = Field(description="Oldest first.")
