"""Who may do what at the front door: tokens, scopes, other partners' referrals, the audit log."""

import base64

import jwt
import pytest
from sqlalchemy import create_engine, select

from hub.ratelimit import AttemptLimiter
from hub.tables import audit_log
from hub.testing import TEST_SIGNING_KEYS, bearer
from hub.tokens import SigningKeys
from intake.schemas import ReferralSubmission, TriageDecision
from intake.service import definition

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
SCHOOL, HEALTH, STAFF = "harlesden-primary-school", "brent-health-visiting", "front-door-demo"


@pytest.fixture
def intake(service_client):
    return service_client(definition)


def _as(client, who, scopes=None):
    return bearer(client.settings, who, scopes)


def _referral_by_school(intake):
    response = intake.post("/v1/referrals", json=EXAMPLE, headers=_as(intake, SCHOOL))
    assert response.status_code == 202, response.text
    return response.json()["referral_id"]


def test_a_partner_gets_a_token_for_its_client_credentials(intake):
    response = intake.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": SCHOOL,
            "client_secret": "demo-school-secret",
            "scope": "referrals:write",
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "referrals:write"
    assert response.headers["cache-control"] == "no-store"
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert intake.post("/v1/referrals", json=EXAMPLE, headers=headers).status_code == 202


def test_http_basic_client_authentication_works_too(intake):
    basic = base64.b64encode(f"{STAFF}:demo-staff-secret".encode()).decode()
    response = intake.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    assert "referrals:triage" in response.json()["scope"].split()


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": SCHOOL, "client_secret": "nope"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "password", "client_id": SCHOOL, "client_secret": "demo-school-secret"},
            400,
            "unsupported_grant_type",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": SCHOOL,
                "client_secret": "demo-school-secret",
                "scope": "referrals:triage",
            },
            400,
            "invalid_scope",
        ),
    ],
)
def test_the_token_endpoint_refuses_with_rfc6749_errors(intake, form, status, error):
    response = intake.post("/v1/oauth/token", data=form)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert "access_token" not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/v1/referrals"), ("get", "/v1/referrals/6f1c9a1e-0000-4000-8000-000000000000")],
)
def test_no_token_or_a_forged_one_is_a_401(intake, method, path):
    kwargs = {"json": EXAMPLE} if method == "post" else {}
    missing = getattr(intake, method)(path, **kwargs)
    forged = getattr(intake, method)(
        path, headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}, **kwargs
    )

    for response in (missing, forged):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_validly_signed_token_whose_exp_is_not_a_number_is_a_401_not_a_500(intake):
    genuine = _as(intake, SCHOOL)["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(genuine, options={"verify_signature": False})
    keys = SigningKeys.from_json(TEST_SIGNING_KEYS)  # the issuer's own key
    for broken in ({"exp": str(claims["exp"])}, {"exp": None}, {"scope": 7}):
        token = keys.sign(claims | broken)
        response = intake.get(
            "/v1/referrals/6f1c9a1e-0000-4000-8000-000000000000",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, (broken, response.text)
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_intake_publishes_the_public_keys_of_its_tokens(intake):
    response = intake.get("/.well-known/jwks.json")
    assert response.status_code == 200
    published = response.json()
    assert published == SigningKeys.from_json(TEST_SIGNING_KEYS).public_jwks()
    assert all("d" not in key for key in published["keys"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_wrong_secrets_for_one_client_id_are_limited_with_a_429(intake):
    # The limiter's clock stands still: every attempt falls in the same minute.
    limit = intake.settings.token_failures_per_client_per_minute
    tokens = intake.app.state.runtime.tokens
    tokens.failures_by_client = AttemptLimiter(limit, clock=lambda: 1000.0)
    wrong = {"grant_type": "client_credentials", "client_id": SCHOOL, "client_secret": "nope"}
    right = wrong | {"client_secret": "demo-school-secret"}

    assert [intake.post("/v1/oauth/token", data=wrong).status_code for _ in range(limit)] == [
        401
    ] * limit
    for form in (wrong, right):  # until the wait is over, not even the right secret is tried
        limited = intake.post("/v1/oauth/token", data=form)
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert int(limited.headers["retry-after"]) == 6  # one attempt back every 60 s / 10
    other = right | {"client_id": HEALTH, "client_secret": "demo-health-secret"}
    assert intake.post("/v1/oauth/token", data=other).status_code == 200
    metrics = intake.get("/metrics").text
    assert 'earlyhelp_token_requests_total{outcome="rate_limited_client"}' in metrics


def test_a_token_without_the_scope_is_a_403_and_stores_nothing(intake):
    read_only = _as(intake, SCHOOL, ["referrals:read"])
    assert intake.post("/v1/referrals", json=EXAMPLE, headers=read_only).status_code == 403
    staff = _as(intake, STAFF)
    assert intake.post("/v1/referrals", json=EXAMPLE, headers=staff).status_code == 403


def test_the_referrer_organisation_comes_from_the_token(intake):
    claimed = EXAMPLE | {"referrer": EXAMPLE["referrer"] | {"organisation_id": HEALTH}}
    response = intake.post("/v1/referrals", json=claimed, headers=_as(intake, SCHOOL))

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "referrer.organisation_id"


def test_a_partner_sees_its_own_referrals_and_not_anothers(intake):
    referral_id = _referral_by_school(intake)

    own = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, SCHOOL))
    other = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, HEALTH))
    staff = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, STAFF))

    assert own.status_code == 200
    assert other.status_code == 404  # not 403: another partner's referrals are not disclosed
    assert staff.status_code == 200


def test_every_read_of_a_referral_is_in_the_audit_log(intake, database_url):
    referral_id = _referral_by_school(intake)
    intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, SCHOOL))
    intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, STAFF))
    intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, HEALTH))  # refused: no read

    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.actor, audit_log.c.action, audit_log.c.resource_id).order_by(
                audit_log.c.id
            )
        ).all()
    engine.dispose()
    # The refused read is written down too (issue 13): it used to leave no trace.
    assert rows == [
        (SCHOOL, "read", referral_id),
        (STAFF, "read", referral_id),
        (HEALTH, "refused", referral_id),
    ]


def test_who_may_triage_withdraw_list_and_read(intake):
    """The authorisation matrix of the front door's endpoints, role by role.

    Refusals run first: the allowed triage and withdrawal at the end succeeding
    shows that none of them changed anything.
    """
    decided = _referral_by_school(intake)
    withdrawn = _referral_by_school(intake)
    triage = ("post", f"/v1/referrals/{decided}/triage", DECISION)
    withdraw = ("post", f"/v1/referrals/{withdrawn}/withdrawal", {"reason": "Sent in error."})
    queue = ("get", "/v1/referrals", None)
    view = ("get", f"/v1/referrals/{decided}", None)
    narrow_staff = (STAFF, ["referrals:read"])
    read_only_school, write_only_school = (
        (SCHOOL, ["referrals:read"]),
        (SCHOOL, ["referrals:write"]),
    )
    matrix = [
        (triage, None, 401),
        (triage, SCHOOL, 403),
        (triage, HEALTH, 403),
        (triage, narrow_staff, 403),
        (withdraw, None, 401),
        (withdraw, STAFF, 403),
        (withdraw, read_only_school, 403),
        (withdraw, HEALTH, 404),  # not its referral: not disclosed
        (queue, None, 401),
        (queue, write_only_school, 403),
        (queue, SCHOOL, 200),
        (queue, HEALTH, 200),  # its own referrals only
        (queue, STAFF, 200),
        (view, None, 401),
        (view, write_only_school, 403),
        (view, HEALTH, 404),
        (view, SCHOOL, 200),
        (view, STAFF, 200),
        (triage, STAFF, 200),
        (withdraw, SCHOOL, 200),
    ]

    wrong = []
    for (method, path, body), who, expected in matrix:
        if who is None:
            headers = {}
        elif isinstance(who, tuple):
            headers = _as(intake, *who)
        else:
            headers = _as(intake, who)
        kwargs = {"json": body} if body is not None else {}
        response = getattr(intake, method)(path, headers=headers, **kwargs)
        if response.status_code != expected:
            wrong.append((method, path, who, expected, response.status_code))
        elif expected >= 400:
            assert response.headers["content-type"] == "application/problem+json"
    assert wrong == []

    def listed(who, status):
        response = intake.get("/v1/referrals", params={"status": status}, headers=_as(intake, who))
        return [item["referral_id"] for item in response.json()["items"]]

    assert listed(SCHOOL, "triaged") == [decided]
    assert listed(SCHOOL, "withdrawn") == [withdrawn]
    assert listed(HEALTH, "triaged") == listed(HEALTH, "withdrawn") == []
    assert listed(STAFF, "triaged") == [decided]


def test_the_openapi_tells_partners_which_operations_need_a_bearer_token(intake):
    spec = intake.get("/openapi.json").json()

    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/referrals"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/v1/oauth/token"]["post"]
