"""Notifications' HTTP API: routes only; the work is in `commands` and `queries`.

A partner sees only its own subscriptions; another partner's is answered 404,
as if it did not exist.
"""

from __future__ import annotations

import json
from typing import Annotated
from uuid import UUID

from cryptography.fernet import InvalidToken
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from hub.commands import run_command
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import problem_responses
from hub.http.scope import caller
from hub.queries import run_query
from hub.refusals import Conflict
from hub.scope import Scope
from hub.service import Runtime, runtime_of
from notifications import commands, queries, subscription_checks
from notifications.encryption import SecretBox
from notifications.policy import SharingPolicy
from notifications.schemas import (
    DeliveryDetail,
    DeliveryList,
    DeliveryView,
    FamilyDisclosures,
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    Subscription,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionRequest,
)
from notifications.settings import NotificationsSettings

router = APIRouter(prefix="/v1", tags=["subscriptions"])

SCOPE = "subscriptions:manage"
DISCLOSURES = "disclosures:read"


async def policy_of(request: Request) -> SharingPolicy:
    return request.app.state.sharing_policy


async def settings_of(request: Request) -> NotificationsSettings:
    return request.app.state.notifications_settings


async def secret_box_of(request: Request) -> SecretBox:
    return request.app.state.secret_box


Caller = Annotated[
    Scope,
    Depends(
        caller(SCOPE, kind="partner", why="Subscriptions belong to partner systems, not to staff.")
    ),
]
Hub = Annotated[Runtime, Depends(runtime_of)]
Policy = Annotated[SharingPolicy, Depends(policy_of)]
Settings = Annotated[NotificationsSettings, Depends(settings_of)]
Box = Annotated[SecretBox, Depends(secret_box_of)]
Staff = Annotated[
    Scope,
    Depends(
        caller(
            DISCLOSURES,
            kind="staff",
            why="The disclosure record is for the authority's information governance staff.",
        )
    ),
]
SubscriptionId = Annotated[UUID, Path(description="The subscription, as created.")]
DeliveryId = Annotated[str, Path(pattern="^msg_[0-9a-f]{32}$", description="The webhook-id.")]


def _reveal(response: Response, box: SecretBox) -> Response:
    """The response with its signing secret decrypted.

    A command answers with the secret sealed, so that the response kept for its
    Idempotency-Key holds it encrypted like the subscription does; only what
    goes back to the partner carries it in clear.
    """
    if not 200 <= response.status_code < 300:
        return response
    body = json.loads(response.body)
    if not isinstance(body, dict) or not body.get("secret"):
        return response
    try:
        body["secret"] = box.open(body["secret"])
    except InvalidToken:
        raise Conflict(
            "The secret in the response kept for this Idempotency-Key was encrypted under a "
            "key since retired; rotate the subscription's secret to receive a new one."
        ) from None
    headers = {
        name: value
        for name, value in response.headers.items()
        if name.lower() not in ("content-length", "content-type")
    }
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        response.status_code,
        headers=headers,
        media_type="application/json",
    )


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses=problem_responses(401, 403, 409, 413, 422),
    summary="Subscribe to events, by webhook or on the partner's own topic",
)
async def create_subscription(
    body: Annotated[SubscriptionRequest, Body()],
    request: Request,
    runtime: Hub,
    scope: Caller,
    policy: Policy,
    settings: Settings,
    box: Box,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """The response carries the webhook signing secret: it is shown only this once.
    From now on the partner receives every event of these types that the
    information-sharing policy lets it see, minimised to the fields it may have.
    """
    embedded = runtime.db.is_sqlite
    await subscription_checks.check_request(body, scope, policy, settings, embedded)
    response = await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.create_subscription(ctx, body, policy, settings, box, embedded),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
    )
    return _reveal(response, box)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    responses=problem_responses(401, 403),
    summary="The caller's subscriptions",
)
async def list_subscriptions(
    request: Request, runtime: Hub, scope: Caller, now: Now
) -> SubscriptionList:
    return await run_query(runtime, request, scope, queries.subscription_list, now=now)


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=Subscription,
    responses=problem_responses(401, 403, 404),
    summary="One of the caller's subscriptions",
)
async def read_subscription(
    subscription_id: SubscriptionId, request: Request, runtime: Hub, scope: Caller, now: Now
) -> Subscription:
    return await run_query(
        runtime, request, scope, lambda ctx: queries.subscription(ctx, subscription_id), now=now
    )


@router.post(
    "/subscriptions/{subscription_id}/pause",
    response_model=Subscription,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Pause deliveries (events keep queueing, in order, until resumed)",
)
async def pause_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.set_status(ctx, subscription_id, "paused", "partner"),
        now=now,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/subscriptions/{subscription_id}/resume",
    response_model=Subscription,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Resume deliveries, starting with what queued while paused",
)
async def resume_subscription(
    subscription_id: SubscriptionId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.set_status(ctx, subscription_id, "active", None),
        now=now,
        idempotency_key=idempotency_key,
    )


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404),
    summary="Delete a subscription and everything still queued for it",
)
async def delete_subscription(
    subscription_id: SubscriptionId, request: Request, runtime: Hub, scope: Caller, now: Now
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.delete_subscription(ctx, subscription_id),
        now=now,
    )


@router.post(
    "/subscriptions/{subscription_id}/secret/rotate",
    response_model=SecretRotated,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Replace the webhook signing secret",
)
async def rotate_secret(
    subscription_id: SubscriptionId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    settings: Settings,
    box: Box,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """During the grace period messages carry two signatures, one per secret, so the
    receiver can switch to the new secret without losing a message.
    """
    grace = settings.secret_rotation_grace_seconds
    response = await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.rotate_secret(ctx, subscription_id, grace, box),
        now=now,
        idempotency_key=idempotency_key,
    )
    return _reveal(response, box)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryList,
    responses=problem_responses(401, 403, 404, 422),
    summary="The delivery log: newest first, by status",
)
async def list_deliveries(
    subscription_id: SubscriptionId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    now: Now,
    status: Annotated[
        str | None,
        Query(
            pattern="^(pending|retrying|delivered|failed|withheld)$",
            description="failed: dead-lettered; withheld: no longer allowed, never sent",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern="^[0-9]{1,18}$")] = None,
) -> DeliveryList:
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.delivery_list(ctx, subscription_id, status, limit, cursor),
        now=now,
    )


@router.get(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses=problem_responses(401, 403, 404, 422),
    summary="One delivery: the event as sent and every attempt",
)
async def read_delivery(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    now: Now,
) -> DeliveryDetail:
    return await run_query(
        runtime,
        request,
        scope,
        lambda ctx: queries.delivery(ctx, subscription_id, delivery_id),
        now=now,
    )


@router.post(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver",
    # Queued, not yet sent: it always answered 202, which the OpenAPI document said was 200.
    status_code=202,
    response_model=DeliveryView,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Send one delivery again (a dead-lettered one, say), with a fresh retry schedule",
)
async def redeliver(
    subscription_id: SubscriptionId,
    delivery_id: DeliveryId,
    request: Request,
    runtime: Hub,
    scope: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.redeliver(ctx, subscription_id, delivery_id),
        now=now,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/subscriptions/{subscription_id}/replay",
    status_code=202,
    response_model=ReplayQueued,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
    summary="Queue again every event since a point in time",
)
async def replay(
    subscription_id: SubscriptionId,
    body: Annotated[ReplayRequest, Body()],
    request: Request,
    runtime: Hub,
    scope: Caller,
    policy: Policy,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Each event keeps its webhook-id, so a receiver can drop what it already has.
    The policy is applied as it stands today: consent withdrawn since is honoured.
    """
    return await run_command(
        runtime,
        request,
        scope,
        lambda ctx: commands.replay(ctx, subscription_id, body, policy),
        now=now,
        payload=body,
        idempotency_key=idempotency_key,
    )


staff_router = APIRouter(prefix="/v1", tags=["disclosures"])


@staff_router.get(
    "/families/{family_id}/disclosures",
    response_model=FamilyDisclosures,
    responses=problem_responses(401, 403, 422),
    summary="Every send of restricted detail about one family to a partner (for the DPO)",
)
async def family_disclosures(
    family_id: Annotated[UUID, Path(description="The family, as the hub knows it.")],
    request: Request,
    runtime: Hub,
    scope: Staff,
    now: Now,
) -> FamilyDisclosures:
    """What was sent, to which partner, when, by which rule and under the case's consent or
    a safeguarding override; oldest first. Every read is audited."""
    return await run_query(
        runtime, request, scope, lambda ctx: queries.family_disclosures(ctx, family_id), now=now
    )
