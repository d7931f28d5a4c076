"""Notifications' HTTP API: partners manage their own subscriptions and read their deliveries.

Thin: validation of a subscription against the policy and the event contracts,
then one transaction per command. A partner sees only its own subscriptions;
another partner's is answered 404, as if it did not exist.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from cryptography.fernet import InvalidToken
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from sqlalchemy import Connection, delete, func, insert, select, update
from starlette.concurrency import run_in_threadpool

from hub.audit import record_read
from hub.auth import Principal, require_scopes
from hub.commands import CommandResult, run_command
from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.registry import EVENT_TYPES
from hub.contracts.topics import partner_topic
from hub.http.dependencies import IdempotencyKey, Now
from hub.http.problems import FieldError, Problem, problem_responses
from hub.service import Runtime, UnitOfWork, runtime_of
from notifications import fanout, signing
from notifications.encryption import SecretBox
from notifications.policy import Partner, SharingPolicy
from notifications.schemas import (
    AttemptView,
    DeliveryDetail,
    DeliveryList,
    DeliveryTarget,
    DeliveryView,
    ReplayQueued,
    ReplayRequest,
    SecretRotated,
    Subscription,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionRequest,
    WebhookDelivery,
)
from notifications.settings import NotificationsSettings
from notifications.tables import deliveries, delivery_attempts, subscriptions

router = APIRouter(prefix="/v1", tags=["subscriptions"])

SCOPE = "subscriptions:manage"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


async def partner(
    principal: Annotated[Principal, Depends(require_scopes(SCOPE))],
) -> Principal:
    if principal.kind != "partner":
        raise Problem.forbidden("Subscriptions belong to partner systems, not to staff.")
    return principal


async def policy_of(request: Request) -> SharingPolicy:
    return request.app.state.sharing_policy


async def settings_of(request: Request) -> NotificationsSettings:
    return request.app.state.notifications_settings


async def secret_box_of(request: Request) -> SecretBox:
    return request.app.state.secret_box


Caller = Annotated[Principal, Depends(partner)]
Hub = Annotated[Runtime, Depends(runtime_of)]
Policy = Annotated[SharingPolicy, Depends(policy_of)]
Settings = Annotated[NotificationsSettings, Depends(settings_of)]
Box = Annotated[SecretBox, Depends(secret_box_of)]
SubscriptionId = Annotated[UUID, Path(description="The subscription, as created.")]


def _invalid(errors: list[FieldError]) -> Problem:
    return Problem.unprocessable("The subscription cannot be accepted.", errors=errors)


def _partner(caller: Principal) -> Partner:
    kind = caller.organisation_type
    return Partner(caller.subject, PartnerOrganisationType(kind) if kind else None)


def _check_event_types(patterns: list[str], partner: Partner, policy: SharingPolicy) -> None:
    errors = []
    for index, pattern in enumerate(patterns):
        matching = [t for t in EVENT_TYPES if fanout.wants([pattern], t)]
        field = f"event_types[{index}]"
        if not matching:
            errors.append(FieldError(field=field, message="matches no event type", code="unknown"))
        elif not any(policy.may_ever_receive(partner, t) for t in matching):
            errors.append(
                FieldError(
                    field=field,
                    message="the information-sharing agreement never shares these events "
                    "with this partner",
                    code="not_shared",
                )
            )
    if errors:
        raise _invalid(errors)


def _check_url(url: str, settings: NotificationsSettings, embedded: bool) -> str:
    """The URL's origin (scheme://host:port), which its circuit breaker guards."""
    field = "delivery.url"
    try:
        parts = urlsplit(url)
        # Read inside the try: a port out of range raises only when it is read.
        explicit_port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number from 0 to 65535
        parts, explicit_port = None, None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid([FieldError(field=field, message="must be an absolute URL", code="url")])
    if parts.username or parts.password:
        raise _invalid(
            [FieldError(field=field, message="must not carry credentials", code="url_credentials")]
        )
    if parts.scheme == "http":
        allowed = settings.allow_http_webhooks
        if allowed is None:
            allowed = embedded and parts.hostname in _LOCAL_HOSTS
        if not allowed:
            raise _invalid(
                [FieldError(field=field, message="must use https", code="https_required")]
            )
    port = explicit_port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _view(conn: Connection, row: Any) -> Subscription:
    waiting = conn.execute(
        select(func.count())
        .select_from(deliveries)
        .where(
            deliveries.c.subscription_id == row.subscription_id,
            deliveries.c.status.in_(fanout.OPEN_STATUSES),
        )
    ).scalar_one()
    return Subscription(
        subscription_id=row.subscription_id,
        partner_id=row.partner_id,
        event_types=json.loads(row.event_types),
        delivery=DeliveryTarget(type=row.channel, url=row.url, topic=row.topic),
        status=row.status,
        paused_reason=row.paused_reason,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
        backlog=waiting,
    )


def _own(conn: Connection, caller: Principal, subscription_id: UUID) -> Any:
    row = conn.execute(
        select(subscriptions).where(
            subscriptions.c.subscription_id == str(subscription_id),
            subscriptions.c.partner_id == caller.subject,
        )
    ).first()
    if row is None:
        raise Problem.not_found(f"No subscription {subscription_id} of yours.")
    return row


async def _command(runtime, request, caller, key, payload, command) -> Response:
    return await run_command(
        runtime,
        request,
        principal=caller.subject,
        idempotency_key=key,
        payload=payload,
        command=command,
    )


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
        raise Problem.conflict(
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
    caller: Caller,
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
    me = _partner(caller)
    _check_event_types(body.event_types, me, policy)
    row: dict[str, Any] = {
        "subscription_id": str(uuid4()),
        "partner_id": caller.subject,
        "partner_type": caller.organisation_type,
        "event_types": json.dumps(body.event_types),
        "status": "active",
        "description": body.description,
        "created_at": now,
        "updated_at": now,
        "url": None,
        "topic": None,
        "secret_encrypted": None,
    }
    if isinstance(body.delivery, WebhookDelivery):
        embedded = runtime.db.is_sqlite
        endpoint = _check_url(body.delivery.url, settings, embedded)
        # Resolving the host may wait on DNS: off the event loop.
        refusal = await run_in_threadpool(
            settings.webhook_destinations().refusal, body.delivery.url
        )
        if refusal:
            field = FieldError(field="delivery.url", message=refusal, code="forbidden_address")
            raise _invalid([field])
        row |= {
            "channel": "webhook",
            "url": body.delivery.url,
            "endpoint": endpoint,
            "secret_encrypted": box.seal(signing.new_secret()),
        }
    else:
        topic = partner_topic(caller.subject)
        row |= {"channel": "partner_topic", "topic": topic, "endpoint": f"kafka://{topic}"}

    def create(uow: UnitOfWork) -> CommandResult:
        uow.conn.execute(insert(subscriptions), row)
        stored = _own(uow.conn, caller, UUID(row["subscription_id"]))
        created = SubscriptionCreated(
            **_view(uow.conn, stored).model_dump(), secret=row["secret_encrypted"]
        )
        return CommandResult(
            201, created, {"Location": f"/v1/subscriptions/{row['subscription_id']}"}
        )

    response = await _command(runtime, request, caller, idempotency_key, body, create)
    return _reveal(response, box)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    responses=problem_responses(401, 403),
    summary="The caller's subscriptions",
)
async def list_subscriptions(runtime: Hub, caller: Caller) -> SubscriptionList:
    def query(conn: Connection) -> SubscriptionList:
        rows = conn.execute(
            select(subscriptions)
            .where(subscriptions.c.partner_id == caller.subject)
            .order_by(subscriptions.c.created_at)
        ).all()
        return SubscriptionList(items=[_view(conn, row) for row in rows])

    return await runtime.read(query)


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=Subscription,
    responses=problem_responses(401, 403, 404),
    summary="One of the caller's subscriptions",
)
async def read_subscription(
    subscription_id: SubscriptionId, runtime: Hub, caller: Caller
) -> Subscription:
    return await runtime.read(lambda conn: _view(conn, _own(conn, caller, subscription_id)))


def _set_status(status: str, paused_reason: str | None):
    async def change(
        subscription_id: SubscriptionId,
        request: Request,
        runtime: Hub,
        caller: Caller,
        now: Now,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        def apply(uow: UnitOfWork) -> CommandResult:
            _own(uow.conn, caller, subscription_id)
            uow.conn.execute(
                update(subscriptions)
                .where(subscriptions.c.subscription_id == str(subscription_id))
                .values(status=status, paused_reason=paused_reason, updated_at=now)
            )
            return CommandResult(200, _view(uow.conn, _own(uow.conn, caller, subscription_id)))

        return await _command(runtime, request, caller, idempotency_key, None, apply)

    return change


router.add_api_route(
    "/subscriptions/{subscription_id}/pause",
    _set_status("paused", "partner"),
    methods=["POST"],
    response_model=Subscription,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Pause deliveries (events keep queueing, in order, until resumed)",
)
router.add_api_route(
    "/subscriptions/{subscription_id}/resume",
    _set_status("active", None),
    methods=["POST"],
    response_model=Subscription,
    responses=problem_responses(401, 403, 404, 409, 422),
    summary="Resume deliveries, starting with what queued while paused",
)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404),
    summary="Delete a subscription and everything still queued for it",
)
async def delete_subscription(
    subscription_id: SubscriptionId, runtime: Hub, caller: Caller
) -> Response:
    def remove(uow: UnitOfWork) -> None:
        _own(uow.conn, caller, subscription_id)
        key = str(subscription_id)
        owned = select(deliveries.c.id).where(deliveries.c.subscription_id == key)
        uow.conn.execute(
            delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(owned))
        )
        uow.conn.execute(delete(deliveries).where(deliveries.c.subscription_id == key))
        uow.conn.execute(delete(subscriptions).where(subscriptions.c.subscription_id == key))

    await runtime.write(remove)
    return Response(status_code=204)


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
    caller: Caller,
    settings: Settings,
    box: Box,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """During the grace period messages carry two signatures, one per secret, so the
    receiver can switch to the new secret without losing a message.
    """
    until = now + timedelta(seconds=settings.secret_rotation_grace_seconds)

    def rotate(uow: UnitOfWork) -> CommandResult:
        row = _own(uow.conn, caller, subscription_id)
        if row.channel != "webhook":
            raise Problem.conflict("A partner topic subscription has no signing secret.")
        sealed = box.seal(signing.new_secret())
        uow.conn.execute(
            update(subscriptions)
            .where(subscriptions.c.subscription_id == row.subscription_id)
            .values(
                secret_encrypted=sealed,
                previous_secret_encrypted=row.secret_encrypted,
                previous_secret_until=until,
                updated_at=now,
            )
        )
        return CommandResult(200, SecretRotated(secret=sealed, previous_secret_valid_until=until))

    response = await _command(runtime, request, caller, idempotency_key, None, rotate)
    return _reveal(response, box)


def _delivery_view(row: Any, cls=DeliveryView, **extra) -> Any:
    return cls(
        delivery_id=row.message_id,
        event_id=row.event_id,
        event_type=row.event_type,
        family_id=row.family_id,
        occurred_at=row.occurred_at,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status in fanout.OPEN_STATUSES else None,
        first_attempt_at=row.first_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        **extra,
    )


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryList,
    responses=problem_responses(401, 403, 404, 422),
    summary="The delivery log: newest first, by status",
)
async def list_deliveries(
    subscription_id: SubscriptionId,
    runtime: Hub,
    caller: Caller,
    status: Annotated[
        str | None,
        Query(pattern="^(pending|retrying|delivered|failed)$", description="failed: dead-lettered"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern="^[0-9]{1,18}$")] = None,
) -> DeliveryList:
    def query(conn: Connection) -> DeliveryList:
        _own(conn, caller, subscription_id)
        statement = select(deliveries).where(deliveries.c.subscription_id == str(subscription_id))
        if status is not None:
            statement = statement.where(deliveries.c.status == status)
        if cursor is not None:
            statement = statement.where(deliveries.c.id < int(cursor))
        rows = conn.execute(statement.order_by(deliveries.c.id.desc()).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return DeliveryList(
            items=[_delivery_view(row) for row in rows],
            next_cursor=str(rows[-1].id) if more else None,
        )

    return await runtime.read(query)


def _own_delivery(conn: Connection, caller: Principal, subscription_id: UUID, delivery_id: str):
    _own(conn, caller, subscription_id)
    row = conn.execute(
        select(deliveries).where(
            deliveries.c.subscription_id == str(subscription_id),
            deliveries.c.message_id == delivery_id,
        )
    ).first()
    if row is None:
        raise Problem.not_found(f"No delivery {delivery_id} in this subscription.")
    return row


DeliveryId = Annotated[str, Path(pattern="^msg_[0-9a-f]{32}$", description="The webhook-id.")]


@router.get(
    "/subscriptions/{subscription_id}/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    responses=problem_responses(401, 403, 404, 422),
    summary="One delivery: the event as sent and every attempt",
)
async def read_delivery(
    subscription_id: SubscriptionId, delivery_id: DeliveryId, runtime: Hub, caller: Caller
) -> DeliveryDetail:
    def query(conn: Connection) -> DeliveryDetail:
        row = _own_delivery(conn, caller, subscription_id, delivery_id)
        attempts = conn.execute(
            select(delivery_attempts)
            .where(delivery_attempts.c.delivery_id == row.id)
            .order_by(delivery_attempts.c.id)
        ).all()
        return _delivery_view(
            row,
            DeliveryDetail,
            event=json.loads(row.body),
            attempt_log=[
                AttemptView(
                    attempted_at=a.attempted_at,
                    outcome=a.outcome,
                    status_code=a.status_code,
                    latency_ms=a.latency_ms,
                    error=a.error,
                )
                for a in attempts
            ],
        )

    detail = await runtime.read(query)
    # The event holds what the partner may know of a family: its reading is logged.
    await record_read(runtime, caller, "delivery", delivery_id)
    return detail


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
    caller: Caller,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    def again(uow: UnitOfWork) -> CommandResult:
        row = _own_delivery(uow.conn, caller, subscription_id, delivery_id)
        fanout.redeliver(uow.conn, row.id, now)
        return CommandResult(
            202, _delivery_view(_own_delivery(uow.conn, caller, subscription_id, delivery_id))
        )

    return await _command(runtime, request, caller, idempotency_key, None, again)


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
    caller: Caller,
    policy: Policy,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Each event keeps its webhook-id, so a receiver can drop what it already has.
    The policy is applied as it stands today: consent withdrawn since is honoured.
    """

    def queue(uow: UnitOfWork) -> CommandResult:
        row = _own(uow.conn, caller, subscription_id)
        queued = fanout.replay(uow.conn, policy, row, body.since, now)
        return CommandResult(202, ReplayQueued(queued=queued))

    return await _command(runtime, request, caller, idempotency_key, body, queue)
