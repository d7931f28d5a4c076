"""Subscriptions: a partner creates, reads, pauses, resumes, rotates and deletes its own."""

import logging
from datetime import UTC, datetime
from uuid import uuid4

import pytest
import sqlalchemy as sa

from notifications.tables import subscriptions

from .conftest import HEALTH, POLICE, SCHOOL, STAFF, as_

HOOK = {"type": "webhook", "url": "https://mis.school.example.org/hooks/earlyhelp"}


@pytest.fixture
def app(notifications):
    return notifications(allow_http_webhooks=None)


def create(app, who=SCHOOL, event_types=("earlyhelp.case.*",), delivery=HOOK, **headers):
    return app.post(
        "/v1/subscriptions",
        json={"event_types": list(event_types), "delivery": delivery},
        headers=as_(app, who) | headers,
    )


def test_the_secret_is_shown_once_and_the_subscription_is_the_partner_s_own(app):
    created = create(app)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert created.headers["location"] == f"/v1/subscriptions/{body['subscription_id']}"
    assert body["partner_id"] == SCHOOL and body["status"] == "active"

    read = app.get(created.headers["location"], headers=as_(app, SCHOOL))
    assert read.status_code == 200 and "secret" not in read.json()
    listed = app.get("/v1/subscriptions", headers=as_(app, SCHOOL)).json()["items"]
    assert [s["subscription_id"] for s in listed] == [body["subscription_id"]]
    assert all("secret" not in s for s in listed)

    # Another partner neither sees nor touches it.
    assert app.get(created.headers["location"], headers=as_(app, HEALTH)).status_code == 404
    assert app.get("/v1/subscriptions", headers=as_(app, HEALTH)).json()["items"] == []
    assert app.delete(created.headers["location"], headers=as_(app, HEALTH)).status_code == 404
    path = created.headers["location"]
    assert app.post(f"{path}/pause", headers=as_(app, HEALTH)).status_code == 404


def test_an_idempotency_key_returns_the_first_subscription(app):
    first = create(app, **{"Idempotency-Key": "sub-1"})
    again = create(app, **{"Idempotency-Key": "sub-1"})
    assert again.status_code == 201
    assert again.json()["subscription_id"] == first.json()["subscription_id"]
    assert len(app.get("/v1/subscriptions", headers=as_(app, SCHOOL)).json()["items"]) == 1


def test_a_key_used_to_pause_cannot_resume_and_both_answers_are_documented(app):
    path = f"/v1/subscriptions/{create(app).json()['subscription_id']}"
    key = {"Idempotency-Key": "pause-1"}
    assert app.post(f"{path}/pause", headers=as_(app, SCHOOL) | key).status_code == 200

    reused = app.post(f"{path}/resume", headers=as_(app, SCHOOL) | key)

    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    assert app.get(path, headers=as_(app, SCHOOL)).json()["status"] == "paused"
    paths = app.get("/openapi.json").json()["paths"]
    for action in ("pause", "resume"):
        # 409: the same key still in flight in another request; 422: as above.
        documented = paths[f"/v1/subscriptions/{{subscription_id}}/{action}"]["post"]
        assert {"409", "422"} <= set(documented["responses"])


def test_pause_resume_rotate_and_delete(app):
    body = create(app).json()
    path = f"/v1/subscriptions/{body['subscription_id']}"
    paused = app.post(f"{path}/pause", headers=as_(app, SCHOOL))
    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["paused_reason"]) == ("paused", "partner")
    resumed = app.post(f"{path}/resume", headers=as_(app, SCHOOL))
    assert (resumed.json()["status"], resumed.json()["paused_reason"]) == ("active", None)

    rotated = app.post(f"{path}/secret/rotate", headers=as_(app, SCHOOL))
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != body["secret"]

    assert app.delete(path, headers=as_(app, SCHOOL)).status_code == 204
    assert app.get(path, headers=as_(app, SCHOOL)).status_code == 404


def test_a_partner_topic_subscription_names_the_partner_s_topic_and_has_no_secret(app):
    created = create(app, who=POLICE, delivery={"type": "partner_topic"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"] is None
    assert body["delivery"] == {
        "type": "partner_topic",
        "url": None,
        "topic": "earlyhelp.partner.met-police-brent.v1",
    }
    path = f"/v1/subscriptions/{body['subscription_id']}/secret/rotate"
    assert app.post(path, headers=as_(app, POLICE)).status_code == 409


@pytest.mark.parametrize(
    ("event_types", "field", "code"),
    [
        (
            ["earlyhelp.case.allocated.v1", "earlyhelp.case.invented.v1"],
            "event_types[1]",
            "unknown",
        ),
        (["earlyhelp.nothing.*"], "event_types[0]", "unknown"),
        # A school's agreement never shares the assessment, whatever the family.
        (["earlyhelp.plan.action_added.v1"], "event_types[0]", "not_shared"),
    ],
)
def test_event_types_must_exist_and_be_shareable_with_the_partner(app, event_types, field, code):
    refused = create(app, event_types=event_types)
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [(field, code)]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://mis.school.example.org/hook", "https_required"),
        ("https://user:pw@mis.school.example.org/hook", "url_credentials"),
        ("ftp://mis.school.example.org/hook", "url"),
    ],
)
def test_webhook_urls_must_be_https_and_carry_no_credentials(app, url, code):
    refused = create(app, delivery={"type": "webhook", "url": url})
    assert refused.status_code == 422
    assert refused.json()["errors"][0] == {
        "field": "delivery.url",
        "message": refused.json()["errors"][0]["message"],
        "code": code,
    }


def test_plain_http_to_this_machine_only_on_the_embedded_default(notifications, database_url):
    app = notifications(allow_http_webhooks=None)
    local = create(app, delivery={"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    assert local.status_code == (201 if database_url.startswith("sqlite") else 422)
    strict = notifications(allow_http_webhooks=False)
    refused = create(strict, delivery={"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    assert refused.status_code == 422


def test_only_partners_with_the_scope_manage_subscriptions(app):
    assert app.get("/v1/subscriptions").status_code == 401
    staff = app.get("/v1/subscriptions", headers=as_(app, STAFF, None))
    assert staff.status_code == 403
    unscoped = app.get("/v1/subscriptions", headers=as_(app, SCHOOL, ["referrals:read"]))
    assert unscoped.status_code == 403


def test_deliveries_of_an_unknown_subscription_are_not_found(app):
    path = f"/v1/subscriptions/{uuid4()}/deliveries"
    assert app.get(path, headers=as_(app, SCHOOL)).status_code == 404
    assert app.get(path, params={"status": "lost"}, headers=as_(app, SCHOOL)).status_code == 422


@pytest.mark.parametrize(
    "event_types",
    [[" earlyhelp.case.*"], ["earlyhelp.case.* "], [" earlyhelp.referral.triaged.v1 "]],
)
def test_event_type_patterns_with_surrounding_spaces_are_refused_not_trimmed(app, event_types):
    refused = create(app, event_types=event_types)

    assert refused.status_code == 422, refused.text
    errors = [(e["field"], e["code"]) for e in refused.json()["errors"]]
    assert errors == [("event_types[0]", "string_pattern_mismatch")]
    assert app.get("/v1/subscriptions", headers=as_(app, SCHOOL)).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "https://mis.school .example.org/hooks/earlyhelp",
        "https://mis.school.example.org /hooks/earlyhelp",
        "https://mis.school.example.org/hooks/early\thelp",
    ],
)
def test_a_webhook_url_with_a_space_is_refused(app, url):
    refused = create(app, delivery={"type": "webhook", "url": url})

    assert refused.status_code == 422, refused.text
    errors = [(e["field"], e["code"]) for e in refused.json()["errors"]]
    assert errors == [("delivery.webhook.url", "string_pattern_mismatch")]
    assert "school" not in refused.text
    assert app.get("/v1/subscriptions", headers=as_(app, SCHOOL)).json()["items"] == []


class _Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_subscriptions_stored_before_the_api_refused_them_are_listed_at_start_up(
    notifications, database_url
):
    spaced_host = "https://mis.school .example.org/hooks/earlyhelp"
    stored = {
        "spaced-url": ('["earlyhelp.case.*"]', "webhook", spaced_host),
        "spaced-type": ('[" earlyhelp.case.* "]', "partner_topic", None),
        "sound": ('["earlyhelp.case.*"]', "webhook", HOOK["url"]),
    }
    ids = {name: str(uuid4()) for name in stored}
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        for name, (event_types, channel, url) in stored.items():
            conn.execute(
                sa.insert(subscriptions).values(
                    subscription_id=ids[name],
                    partner_id=SCHOOL,
                    partner_type="school",
                    event_types=event_types,
                    channel=channel,
                    url=url,
                    endpoint="https://mis.school.example.org:443",
                    status="active",
                    created_at=datetime(2025, 3, 1, tzinfo=UTC),
                    updated_at=datetime(2025, 3, 1, tzinfo=UTC),
                )
            )
    engine.dispose()

    # On the logger itself: the service's start replaces the root logger's handlers.
    logger = logging.getLogger("notifications.subscriptions")
    records = _Recorded()
    logger.addHandler(records)
    try:
        notifications()
    finally:
        logger.removeHandler(records)

    warnings = [r.getMessage() for r in records.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    [url_warning] = [w for w in warnings if ids["spaced-url"] in w]
    assert "delivery.url" in url_warning and SCHOOL in url_warning
    [type_warning] = [w for w in warnings if ids["spaced-type"] in w]
    assert "event_types" in type_warning
    assert not any(ids["sound"] in w for w in warnings)
    assert not any("mis.school" in w for w in warnings)
