"""Schemathesis against notifications' OpenAPI, on a whole hub running as processes.

Before the run, the school subscribes a webhook nothing answers and refers a
family (so the subscription has a delivery, kept retrying), and the police
subscribe on their partner topic. Part of the generated requests naming a
subscription or a delivery name these (see `steer_to_seeded_records`), the
rest name nothing. Subscriptions belong to partner systems (staff are refused
on every operation), so notifications is called as two partners the
information-sharing policy treats differently (docs/subscribing.md):

- `test_no_server_errors_and_responses_conform`, as a school (Harlesden Primary
  School) and as the police (Metropolitan Police, Brent), both with
  `subscriptions:manage`: never a 5xx; the status code, content type, headers
  and body are ones the schema documents.
- `test_unsupported_methods_are_refused_with_allow`: a method the path does not
  offer gets 405 with an `Allow` header naming the path's methods.
- `test_invalid_requests_are_refused`, as the school: a request the schema
  forbids is refused (4xx), not accepted.

Not checked, on purpose: `positive_data_acceptance`. The schema cannot express
what notifications checks beyond it (an event type pattern that matches an
event type the policy ever shares with this partner, an https webhook URL with
no credentials in it), and a generated subscription or delivery id names
nothing of the caller's, so a schema-valid request is often rightly refused
with 404 or 422.

The bug this module found is fixed and kept as a regression test below, with
its input: a redelivery answered 202, which the schema documented as 200 (it
now documents the 202 partners have always had). Found by hand, not by
schemathesis, and fixed too: a webhook URL with a port out of range or not a
number, or an unclosed IPv6 bracket, answered 500 (now 422), and a replay
`since` a number was read as a Unix time.

The schema is built at import time from notifications' routers (see
tests/api/support.py for why);
`test_the_schema_under_test_is_the_one_notifications_serves` proves it is the
document the live service serves. Generation is deterministic and bounded: at
most `MAX_EXAMPLES` random examples per operation and generation mode, 10 s per
request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from hub.broker import free_port
from intake.schemas import ReferralSubmission
from notifications.service import definition
from tests.api.support import (
    ALL_PHASES,
    CONFORMANCE_CHECKS,
    INFORMATION_GOVERNANCE,
    METHODS_PHASES,
    NEGATIVE_DATA_CHECKS,
    POLICE,
    REQUEST_TIMEOUT_S,
    SUBJECT_ACCESS,
    UNSUPPORTED_METHOD_CHECKS,
    assert_documented,
    assert_served_schema_is,
    schemathesis_schema,
    service_openapi,
    steer_to_seeded_records,
)
from tests.harness import PARTNER, Hub, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# The seeded deliveries come from referrals made at intake.
HUB_SERVICES = ("intake", "notifications")

# Bounds the fuzzing phase only: the examples and coverage phases (the documented
# examples, then every boundary and type-mutated value of each field) run whole.
# 25 random cases per operation keep `make test` within its time budget.
MAX_EXAMPLES = 25

OPENAPI = service_openapi(definition)
SCHEMA = schemathesis_schema(OPENAPI, phases=ALL_PHASES, max_examples=MAX_EXAMPLES)
METHODS_SCHEMA = schemathesis_schema(OPENAPI, phases=METHODS_PHASES, max_examples=MAX_EXAMPLES)
SEEDED: dict[str, list[str]] = {}
steer_to_seeded_records(SCHEMA, SEEDED)
REFERRAL = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]


@pytest.fixture(scope="module")
def notifications_url(hub: Hub) -> str:
    return hub.url("notifications")


def _subscribe(url: str, headers: dict[str, str], body: dict) -> str:
    response = httpx.post(
        url + "/v1/subscriptions", json=body, headers=headers, timeout=REQUEST_TIMEOUT_S
    )
    assert response.status_code == 201, response.text
    return response.json()["subscription_id"]


@pytest.fixture(scope="module", autouse=True)
def seeded_records(
    hub: Hub, auth: Callable[[str], dict[str, str]], notifications_url: str
) -> Iterator[dict[str, str]]:
    """A webhook subscription of the school with a delivery of its own referral, kept
    retrying (nothing listens on the port), and a partner topic subscription of the police."""
    school = _subscribe(
        notifications_url,
        auth(PARTNER),
        {
            "event_types": ["earlyhelp.referral.*"],
            "delivery": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hooks"},
        },
    )
    police = _subscribe(
        notifications_url,
        auth(POLICE),
        {"event_types": ["earlyhelp.case.*"], "delivery": {"type": "partner_topic"}},
    )
    referral = httpx.post(
        hub.url("intake") + "/v1/referrals",
        json=REFERRAL,
        headers=auth(PARTNER),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert referral.status_code == 202, referral.text

    def delivery_ids() -> list[str]:
        log = httpx.get(
            notifications_url + f"/v1/subscriptions/{school}/deliveries",
            headers=auth(PARTNER),
            timeout=REQUEST_TIMEOUT_S,
        )
        return [item["delivery_id"] for item in log.json()["items"]]

    deliveries = wait_for(
        delivery_ids, 30, lambda: "the referral never reached the webhook\n" + hub.logs_tail()
    )
    SEEDED.update(subscription_id=[school, police], delivery_id=deliveries)
    yield {"subscription_id": school, "delivery_id": deliveries[0]}
    SEEDED.clear()


# --- regressions found by schemathesis ------------------------------------------------


def test_a_redelivery_answers_the_202_the_schema_documents(
    auth, notifications_url, seeded_records
) -> None:
    # Schemathesis's input: the redelivery answered 202, the OpenAPI document said 200.
    path = "/v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"
    response = httpx.post(
        notifications_url + path.format(**seeded_records),
        headers=auth(PARTNER),
        timeout=REQUEST_TIMEOUT_S,
    )

    assert response.status_code == 202, response.text
    assert_documented(SCHEMA, "POST", path, response)


# Found by hand, not by schemathesis: urlsplit raises on these, and they answered 500.
@pytest.mark.parametrize("url", ["https://a:99999/x", "http://[::1/x", "https://a:port/x"])
def test_a_webhook_url_python_cannot_split_is_refused(auth, notifications_url, url) -> None:
    response = httpx.post(
        notifications_url + "/v1/subscriptions",
        json={"event_types": ["earlyhelp.referral.*"], "delivery": {"type": "webhook", "url": url}},
        headers=auth(PARTNER),
        timeout=REQUEST_TIMEOUT_S,
    )

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["delivery.url"]


# Not schemathesis's find but the fault it found in the other services: 0 is 1 January 1970.
@pytest.mark.parametrize("since", [0, "1740787200"])
def test_a_replay_since_a_number_is_refused(auth, notifications_url, seeded_records, since):
    response = httpx.post(
        notifications_url + f"/v1/subscriptions/{seeded_records['subscription_id']}/replay",
        json={"since": since},
        headers=auth(PARTNER),
        timeout=REQUEST_TIMEOUT_S,
    )

    assert response.status_code == 422, response.text
    assert [error["field"] for error in response.json()["errors"]] == ["since"]


def test_the_schema_under_test_is_the_one_notifications_serves(notifications_url: str) -> None:
    assert_served_schema_is(notifications_url, SCHEMA)


@pytest.mark.parametrize("caller", [PARTNER, POLICE])
@SCHEMA.parametrize()
def test_no_server_errors_and_responses_conform(case, auth, notifications_url, caller) -> None:
    case.call_and_validate(
        base_url=notifications_url, headers=auth(caller), checks=CONFORMANCE_CHECKS
    )


@METHODS_SCHEMA.parametrize()
def test_unsupported_methods_are_refused_with_allow(case, auth, notifications_url) -> None:
    case.call_and_validate(
        base_url=notifications_url, headers=auth(PARTNER), checks=UNSUPPORTED_METHOD_CHECKS
    )


@SCHEMA.parametrize()
def test_invalid_requests_are_refused(case, auth, notifications_url) -> None:
    # Partners reach everything but subject access, which is information governance's.
    caller = INFORMATION_GOVERNANCE if case.operation.path.startswith(SUBJECT_ACCESS) else PARTNER
    case.call_and_validate(
        base_url=notifications_url, headers=auth(caller), checks=NEGATIVE_DATA_CHECKS
    )
