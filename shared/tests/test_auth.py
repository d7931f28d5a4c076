"""Tokens and secrets, without HTTP: what every service relies on."""

import asyncio
import base64
import json
import shutil
import threading
import time
from pathlib import Path

import jwt
import pytest
import yaml

from hub.auth import (
    Identities,
    IdentitiesWatch,
    InvalidToken,
    SecretChecks,
    SecretChecksBusy,
    TokenIssuer,
    TokenVerifier,
    hash_secret,
    token_service,
    verify_secret,
)
from hub.ratelimit import AttemptLimiter
from hub.settings import REPO_ROOT, HubSettings
from hub.tokens import (
    PUBLIC_KEYS_FILE,
    SIGNING_KEYS_FILE,
    KeyConfigurationError,
    KeyRing,
    SigningKeys,
    StaticKeys,
    embedded_signing_keys,
    new_signing_key,
    parse_public_jwks,
)

IDENTITIES_FILE = REPO_ROOT / "config" / "identities.yaml"
KEY = new_signing_key()
KEYS = SigningKeys({"keys": [KEY]})
SCHOOL = "harlesden-primary-school"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _pair(keys=KEYS, ttl=900, identities_file=IDENTITIES_FILE, clock=time.time):
    """An issuer with `keys` and a verifier that has only their public halves."""
    identities = IdentitiesWatch(identities_file)
    public = StaticKeys(parse_public_jwks(keys.public_jwks()))
    issuer = TokenIssuer(keys, identities, ttl, clock=clock)
    return issuer, TokenVerifier(identities, KeyRing([public]), clock=clock)


def _client(issuer, client_id=SCHOOL):
    return issuer.identities.current.client(client_id)


def test_a_secret_verifies_only_against_its_own_hash():
    stored = hash_secret("correct horse")
    assert stored.startswith("scrypt$")
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horsE", stored)
    assert not verify_secret("correct horse", "scrypt$broken")


def test_a_partner_token_carries_its_organisation_only_granted_scopes_and_a_jti():
    issuer, verifier = _pair()
    school = _client(issuer)

    token, scopes = issuer.issue(school, ["referrals:read"])
    principal = verifier.verify(token)

    assert scopes == {"referrals:read"}
    assert principal.kind == "partner"
    assert principal.organisation_id == SCHOOL
    assert principal.organisation_type == "school"
    assert jwt.get_unverified_header(token) == {
        "alg": "EdDSA",
        "kid": KEY["kid"],
        "typ": "JWT",
    }
    another = issuer.issue(school, ["referrals:read"])[0]
    ids = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in (token, another)}
    assert len(ids) == 2
    with pytest.raises(PermissionError):
        issuer.issue(school, ["referrals:triage"])


def test_staff_scopes_come_from_their_roles():
    issuer, verifier = _pair()
    principal = verifier.verify(issuer.issue(_client(issuer, "front-door-demo"))[0])
    assert principal.organisation_id is None
    assert {"referrals:triage", "referrals:read"} <= principal.scopes


def test_tokens_signed_with_another_key_expired_or_tampered_are_refused():
    issuer, verifier = _pair()
    school = _client(issuer)
    # Another key under the same kid: what a service that made itself a key would sign with.
    impostor_key = {**new_signing_key(), "kid": KEY["kid"]}
    impostor, _ = _pair(SigningKeys({"keys": [impostor_key]}))
    expired = _pair(ttl=60)[0].issue(school, ttl_seconds=-1)[0]
    claims = jwt.decode(issuer.issue(school)[0], options={"verify_signature": False})
    # The old shared-key scheme, and the public key passed off as an HMAC secret.
    public_x = KEY["x"]
    hmac_signed = [
        jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "x"})
        for secret in ("a-guessed-key-of-a-plausible-length!", public_x)
    ]
    unsigned = jwt.encode(claims, None, algorithm="none")

    for bad in (impostor.issue(school)[0], expired, *hmac_signed, unsigned, "not-a-jwt"):
        with pytest.raises(InvalidToken):
            verifier.verify(bad)


def test_a_validly_signed_token_with_a_malformed_claim_is_refused_not_an_error():
    issuer, verifier = _pair()
    claims = jwt.decode(issuer.issue(_client(issuer))[0], options={"verify_signature": False})
    for broken in (
        {"exp": str(claims["exp"])},
        {"exp": True},
        {"iat": "yesterday"},
        {"scope": ["referrals:read"]},
        {"kind": "robot"},
        {"roles": "front_door"},
    ):
        token = KEYS.sign(claims | broken)
        with pytest.raises(InvalidToken):
            verifier.verify(token)


def test_a_token_verified_before_is_still_refused_once_it_expires():
    clock = Clock()
    issuer, verifier = _pair(ttl=60, clock=clock)
    token, _ = issuer.issue(_client(issuer))
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # the second time comes from the cache

    clock.now += 59
    assert verifier.verify(token) is first
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_a_cached_token_lends_nothing_to_a_tampered_copy():
    issuer, verifier = _pair()
    token = issuer.issue(_client(issuer), ["referrals:read"])[0]
    assert verifier.verify(token).scopes == {"referrals:read"}
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    widened = (
        base64.urlsafe_b64encode(json.dumps(claims | {"scope": "referrals:triage"}).encode())
        .rstrip(b"=")
        .decode()
    )
    for bad in (f"{header}.{widened}.{signature}", token + "x", token[:-1]):
        with pytest.raises(InvalidToken):
            verifier.verify(bad)


def test_the_cache_of_verified_tokens_stays_bounded():
    issuer, verifier = _pair()
    school = _client(issuer)
    issued = [issuer.issue(school)[0] for _ in range(TokenVerifier.VERIFIED_CACHE_SIZE + 10)]
    for token in issued:
        verifier.verify(token)
    assert len(verifier._verified) == TokenVerifier.VERIFIED_CACHE_SIZE
    assert issued[0] not in verifier._verified
    assert verifier.verify(issued[0]).subject == SCHOOL


def test_during_a_rotation_tokens_of_both_keys_verify_and_the_new_key_signs():
    new_key = new_signing_key()
    rotated = SigningKeys({"keys": [new_key, KEY]})
    before, _ = _pair(KEYS)
    after, verifier = _pair(rotated)

    assert [k["kid"] for k in rotated.public_jwks()["keys"]] == [new_key["kid"], KEY["kid"]]
    assert jwt.get_unverified_header(after.issue(_client(after))[0])["kid"] == new_key["kid"]
    for issuer in (before, after):
        assert verifier.verify(issuer.issue(_client(issuer))[0]).subject == SCHOOL
    with pytest.raises(KeyConfigurationError, match="more than two"):
        SigningKeys({"keys": [new_signing_key(), new_key, KEY]})


def test_secrets_are_checked_off_the_event_loop(tmp_path: Path):
    """A coroutine keeps running while a secret is checked (scrypt): had the check run on
    the event loop, it could not have advanced until the check was over."""
    tokens = token_service(HubSettings(var_dir=tmp_path), issues=True, embedded=True)
    ticks = 0
    checking = True

    async def ticker() -> None:
        nonlocal ticks
        while checking:
            ticks += 1
            await asyncio.sleep(0)

    async def scenario():
        nonlocal checking
        running = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks_before = ticks
        client = await tokens.authenticate(SCHOOL, "demo-school-secret")
        ticks_during = ticks - ticks_before
        checking = False
        await running
        return client, ticks_during

    try:
        client, ticks_during = asyncio.run(scenario())
    finally:
        tokens.close()
    assert client is not None and client.client_id == SCHOOL
    assert ticks_during > 0


def test_a_secret_check_finding_the_queue_full_is_refused_without_waiting():
    """One thread and no room to wait: while one check is admitted, the next is refused
    at once (its caller answers 503), and once that check is over the next is admitted."""
    checks = SecretChecks(threads=1, max_waiting=0)
    identities = Identities.load(IDENTITIES_FILE)

    async def scenario():
        first = asyncio.create_task(checks.authenticate(identities, SCHOOL, "demo-school-secret"))
        await asyncio.sleep(0)  # the first check is admitted and handed to the thread
        with pytest.raises(SecretChecksBusy) as busy:
            await checks.authenticate(identities, SCHOOL, "demo-school-secret")
        admitted = await first
        after = await checks.authenticate(identities, "no-such-client", "whatever")
        return busy.value, admitted, after

    try:
        busy, admitted, after = asyncio.run(scenario())
    finally:
        checks.close()
    assert busy.retry_after_s > 0
    assert admitted is not None and admitted.client_id == SCHOOL
    assert after is None  # an unknown client id, answered like a wrong secret


def test_an_attempt_given_back_can_be_made_again():
    limiter = AttemptLimiter(2, clock=lambda: 1000.0)  # the clock stands still

    assert [limiter.attempt("client"), limiter.attempt("client")] == [0.0, 0.0]
    assert limiter.attempt("client") > 0
    limiter.refund("client")
    assert limiter.attempt("client") == 0.0
    assert limiter.attempt("client") > 0
    limiter.refund("never-seen")  # nothing counted against it: nothing to give back
    assert [limiter.attempt("never-seen"), limiter.attempt("never-seen")] == [0.0, 0.0]


# --- revocation ------------------------------------------------------------------------


@pytest.fixture
def identities_file(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    shutil.copy(IDENTITIES_FILE, path)
    return path


def _edit(path: Path, change) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    staged = path.with_suffix(".new")
    staged.write_text(yaml.safe_dump(document))
    staged.replace(path)  # as an operator's editor or a ConfigMap update would


def _entry(document: dict, client_id: str) -> dict:
    return next(c for c in document["clients"] if c["client_id"] == client_id)


def test_removing_a_client_revokes_its_tokens_even_cached_ones(identities_file: Path):
    issuer, verifier = _pair(identities_file=identities_file)
    token = issuer.issue(_client(issuer))[0]
    assert verifier.verify(token).subject == SCHOOL  # now in the cache

    _edit(identities_file, lambda d: d["clients"].remove(_entry(d, SCHOOL)))
    assert verifier.identities.reload()

    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(token)


def test_narrowing_a_client_refuses_tokens_that_carry_more(identities_file: Path):
    issuer, verifier = _pair(identities_file=identities_file)
    manager = "harlesden-team-manager"
    school_token = issuer.issue(_client(issuer), ["referrals:read"])[0]
    school_wide = issuer.issue(_client(issuer))[0]
    manager_token = issuer.issue(_client(issuer, manager))[0]
    for token in (school_token, school_wide, manager_token):
        verifier.verify(token)

    def narrow(document):
        _entry(document, SCHOOL)["scopes"] = ["referrals:read"]
        _entry(document, manager)["localities"] = ["brent-willesden"]

    _edit(identities_file, narrow)
    verifier.identities.reload()

    assert verifier.verify(school_token).scopes == {"referrals:read"}  # still within grant
    for token in (school_wide, manager_token):
        with pytest.raises(InvalidToken, match="revoked"):
            verifier.verify(token)
    fresh = issuer.issue(_client(issuer, manager))[0]
    assert verifier.verify(fresh).localities == ("brent-willesden",)


def test_not_before_revokes_tokens_issued_earlier_only(identities_file: Path):
    clock = Clock()
    issuer, verifier = _pair(identities_file=identities_file, clock=clock)
    earlier = issuer.issue(_client(issuer))[0]
    verifier.verify(earlier)

    cut = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now + 10))
    _edit(identities_file, lambda d: _entry(d, SCHOOL).update(not_before=cut))
    verifier.identities.reload()
    clock.now += 20
    later = issuer.issue(_client(issuer))[0]

    with pytest.raises(InvalidToken, match="revoked"):
        verifier.verify(earlier)
    assert verifier.verify(later).subject == SCHOOL


def test_an_invalid_identities_file_keeps_the_last_good_one(identities_file: Path):
    issuer, verifier = _pair(identities_file=identities_file)
    token = issuer.issue(_client(issuer))[0]
    identities_file.write_text("clients: [{client_id: 'Not A Slug'}]\n")

    assert not verifier.identities.reload()
    assert verifier.verify(token).subject == SCHOOL


def test_the_watch_reloads_a_changed_file_by_itself(identities_file: Path):
    watch = IdentitiesWatch(identities_file, interval_s=0.05)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,))
    thread.start()
    try:
        _edit(identities_file, lambda d: d["clients"].remove(_entry(d, SCHOOL)))
        deadline = time.monotonic() + 10
        while watch.current.client(SCHOOL) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watch.current.client(SCHOOL) is None
    finally:
        stop.set()
        thread.join()


# --- who holds which keys ----------------------------------------------------------------


def test_only_the_issuer_may_hold_private_keys_and_others_need_public_ones(tmp_path: Path):
    private = json.dumps({"keys": [new_signing_key()]})
    public = json.dumps(SigningKeys.from_json(private).public_jwks())
    on_postgres = {"var_dir": tmp_path, "token_signing_keys": private}

    assert token_service(HubSettings(**on_postgres), issues=True, embedded=False).issuer
    with pytest.raises(KeyConfigurationError, match="only the token issuer"):
        token_service(HubSettings(**on_postgres), issues=False, embedded=False)
    with pytest.raises(KeyConfigurationError, match="no public keys"):
        token_service(HubSettings(var_dir=tmp_path), issues=False, embedded=False)
    with pytest.raises(KeyConfigurationError, match="EARLYHELP_TOKEN_SIGNING_KEYS is not set"):
        token_service(HubSettings(var_dir=tmp_path), issues=True, embedded=False)
    verifier_only = token_service(
        HubSettings(var_dir=tmp_path, token_public_keys=public), issues=False, embedded=False
    )
    assert verifier_only.issuer is None
    with pytest.raises(KeyConfigurationError, match="private key material"):
        parse_public_jwks(private)


def test_services_starting_together_share_one_generated_key_set(tmp_path: Path):
    sets: list[dict] = []
    threads = [
        threading.Thread(target=lambda: sets.append(embedded_signing_keys(tmp_path).public_jwks()))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({json.dumps(s) for s in sets}) == 1
    assert (tmp_path / SIGNING_KEYS_FILE).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [PUBLIC_KEYS_FILE, SIGNING_KEYS_FILE]
    published = json.loads((tmp_path / PUBLIC_KEYS_FILE).read_text())
    assert published == sets[0] and "d" not in published["keys"][0]


def test_on_the_embedded_default_other_services_verify_with_the_public_file(tmp_path: Path):
    settings = HubSettings(var_dir=tmp_path)
    verifying = token_service(settings, issues=False, embedded=True)  # before the issuer
    issuing = token_service(settings, issues=True, embedded=True)
    token = issuing.issuer.issue(_client(issuing.issuer))[0]

    assert verifying.verify(token).subject == SCHOOL


# --- the identities file -----------------------------------------------------------------


def test_a_staff_token_carries_the_localities_and_teams_the_identities_file_gives():
    issuer, verifier = _pair()
    practitioner = verifier.verify(issuer.issue(_client(issuer, "samira-okafor"))[0])
    front_door = verifier.verify(issuer.issue(_client(issuer, "front-door-demo"))[0])

    assert practitioner.teams == ("harlesden-early-help",)
    assert practitioner.localities == ("brent-harlesden",)
    assert not practitioner.authority_wide
    assert front_door.authority_wide


def test_a_partner_cannot_be_given_localities_or_teams():
    from pydantic import ValidationError

    from hub.auth import Client

    with pytest.raises(ValidationError, match="cannot have localities or teams"):
        Client(
            client_id="some-school",
            kind="partner",
            name="Some School",
            organisation_type="school",
            localities=("brent-harlesden",),
            secret_hash="scrypt$x$y",
        )
