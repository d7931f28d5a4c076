"""Tokens and secrets, without HTTP: what every service relies on."""

import base64
import json
import threading
import time
from pathlib import Path

import jwt
import pytest

from hub.auth import (
    Identities,
    InvalidToken,
    TokenService,
    hash_secret,
    signing_key,
    verify_secret,
)
from hub.settings import REPO_ROOT, HubSettings
from hub.testing import TEST_SIGNING_KEY

IDENTITIES = Identities.load(REPO_ROOT / "config" / "identities.yaml")


def _tokens(key=TEST_SIGNING_KEY, ttl=900):
    return TokenService(key, IDENTITIES, ttl)


def test_a_secret_verifies_only_against_its_own_hash():
    stored = hash_secret("correct horse")
    assert stored.startswith("scrypt$")
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horsE", stored)
    assert not verify_secret("correct horse", "scrypt$broken")


def test_a_partner_token_carries_its_organisation_and_only_granted_scopes():
    tokens = _tokens()
    school = IDENTITIES.client("harlesden-primary-school")

    token, scopes = tokens.issue(school, ["referrals:read"])
    principal = tokens.verify(token)

    assert scopes == {"referrals:read"}
    assert principal.kind == "partner"
    assert principal.organisation_id == "harlesden-primary-school"
    assert principal.organisation_type == "school"
    with pytest.raises(PermissionError):
        tokens.issue(school, ["referrals:triage"])


def test_staff_scopes_come_from_their_roles():
    staff = IDENTITIES.client("front-door-demo")
    principal = _tokens().verify(_tokens().issue(staff)[0])
    assert principal.organisation_id is None
    assert {"referrals:triage", "referrals:read"} <= principal.scopes


def test_tokens_signed_with_another_key_expired_or_tampered_are_refused():
    school = IDENTITIES.client("harlesden-primary-school")
    other_key = _tokens(key="another-key-that-is-long-enough-to-be-used")
    expired = _tokens(ttl=60).issue(school, ttl_seconds=-1)[0]
    token = _tokens().issue(school)[0]
    claims = jwt.decode(token, options={"verify_signature": False})
    widened = jwt.encode(
        claims | {"scope": "referrals:triage"},
        "a-guessed-key-of-a-plausible-length!",
        algorithm="HS256",
    )

    for bad in (other_key.issue(school)[0], expired, widened, "not-a-jwt"):
        with pytest.raises(InvalidToken):
            _tokens().verify(bad)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_token_verified_before_is_still_refused_once_it_expires():
    clock = Clock()
    tokens = TokenService(TEST_SIGNING_KEY, IDENTITIES, 60, clock=clock)
    token, _ = tokens.issue(IDENTITIES.client("harlesden-primary-school"))
    first = tokens.verify(token)
    assert tokens.verify(token) is first  # the second time comes from the cache

    clock.now += 59
    assert tokens.verify(token) is first
    clock.now += 2
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token)


def test_a_cached_token_lends_nothing_to_a_tampered_copy():
    tokens = _tokens()
    school = IDENTITIES.client("harlesden-primary-school")
    token = tokens.issue(school, ["referrals:read"])[0]
    assert tokens.verify(token).scopes == {"referrals:read"}
    header, _payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    widened = (
        base64.urlsafe_b64encode(json.dumps(claims | {"scope": "referrals:triage"}).encode())
        .rstrip(b"=")
        .decode()
    )
    for bad in (f"{header}.{widened}.{signature}", token + "x", token[:-1]):
        with pytest.raises(InvalidToken):
            tokens.verify(bad)


def test_the_cache_of_verified_tokens_stays_bounded():
    tokens = _tokens()
    school = IDENTITIES.client("harlesden-primary-school")
    issued = [tokens.issue(school)[0] for _ in range(TokenService.VERIFIED_CACHE_SIZE + 10)]
    for token in issued:
        tokens.verify(token)
    assert len(tokens._verified) == TokenService.VERIFIED_CACHE_SIZE
    assert issued[0] not in tokens._verified
    assert tokens.verify(issued[0]).subject == "harlesden-primary-school"


def test_services_starting_together_share_one_generated_key(tmp_path: Path):
    settings = HubSettings(service_name="intake", var_dir=tmp_path)
    keys: list[str] = []
    threads = [
        threading.Thread(target=lambda: keys.append(signing_key(settings))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert (tmp_path / "jwt-signing-key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt-signing-key"]
    assert signing_key(settings) == keys[0]


def test_a_staff_token_carries_the_localities_and_teams_the_identities_file_gives():
    tokens = _tokens()
    practitioner = tokens.verify(tokens.issue(IDENTITIES.client("samira-okafor"))[0])
    front_door = tokens.verify(tokens.issue(IDENTITIES.client("front-door-demo"))[0])

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
