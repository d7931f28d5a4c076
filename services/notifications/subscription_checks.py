"""What a subscription request must satisfy beyond its schema: event types the policy
shares with the partner, and a webhook URL the hub will call."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool

from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.registry import EVENT_TYPES
from hub.refusals import Invalid, RefusedField
from hub.scope import Scope
from notifications import fanout
from notifications.policy import Partner, SharingPolicy
from notifications.schemas import SubscriptionRequest, WebhookDelivery
from notifications.settings import NotificationsSettings

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def partner_of(scope: Scope) -> Partner:
    """The partner system a subscription's caller is, for the sharing policy."""
    kind = scope.organisation_type
    return Partner(scope.subject, PartnerOrganisationType(kind) if kind else None)


def _invalid(errors: list[RefusedField]) -> Invalid:
    return Invalid("The subscription cannot be accepted.", errors=errors)


def check_event_types(patterns: list[str], partner: Partner, policy: SharingPolicy) -> None:
    errors = []
    for index, pattern in enumerate(patterns):
        matching = [t for t in EVENT_TYPES if fanout.wants([pattern], t)]
        field = f"event_types[{index}]"
        if not matching:
            errors.append(RefusedField(field, "matches no event type", "unknown"))
        elif not any(policy.may_ever_receive(partner, t) for t in matching):
            errors.append(
                RefusedField(
                    field,
                    "the information-sharing agreement never shares these events with this partner",
                    code="not_shared",
                )
            )
    if errors:
        raise _invalid(errors)


def check_url(url: str, settings: NotificationsSettings, embedded: bool) -> str:
    """The URL's origin (scheme://host:port), which its circuit breaker guards."""
    field = "delivery.url"
    try:
        parts = urlsplit(url)
        # Read inside the try: a port out of range raises only when it is read.
        explicit_port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is no number from 0 to 65535
        parts, explicit_port = None, None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise _invalid([RefusedField(field, "must be an absolute URL", "url")])
    if parts.username or parts.password:
        raise _invalid([RefusedField(field, "must not carry credentials", "url_credentials")])
    if parts.scheme == "http":
        allowed = settings.allow_http_webhooks
        if allowed is None:
            allowed = embedded and parts.hostname in _LOCAL_HOSTS
        if not allowed:
            raise _invalid([RefusedField(field, "must use https", "https_required")])
    port = explicit_port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


async def check_request(
    body: SubscriptionRequest,
    scope: Scope,
    policy: SharingPolicy,
    settings: NotificationsSettings,
    embedded: bool,
) -> None:
    """Every check of a subscription request, the webhook host's addresses last.

    Before the command's transaction, not in it: resolving the host may wait on DNS,
    which neither the event loop nor a held transaction should. The command repeats
    the checks that need no network, so that it is sound when called on its own.
    """
    check_event_types(body.event_types, partner_of(scope), policy)
    if isinstance(body.delivery, WebhookDelivery):
        url = body.delivery.url
        check_url(url, settings, embedded)
        refusal = await run_in_threadpool(settings.webhook_destinations().refusal, url)
        if refusal:
            raise _invalid([RefusedField("delivery.url", refusal, "forbidden_address")])
