"""Staff signing in with the council's own OpenID Connect provider: its tokens verified
against its JWK Set, served by a real HTTP server, and its groups mapped to the hub's
roles, localities and teams."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import time
import uuid
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from hub.auth import InvalidToken, token_service
from hub.settings import REPO_ROOT, HubSettings
from hub.testing import TEST_PUBLIC_KEYS, JwksServer
from hub.tokens import KeyRing, RemoteKeys, UnknownSigningKey

PROVIDER = "https://login.council.example/tenant/v2.0"
AUDIENCE = "api://early-help-hub"
FRONT_DOOR, HARLESDEN_MANAGERS, CANTEEN = "4b1c-front-door", "9e2d-harlesden-mgrs", "canteen"


class ProviderKey:
    """One signing key of the provider (RSA, as Entra ID uses)."""

    def __init__(self) -> None:
        self.kid = uuid.uuid4().hex
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        public = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return public | {"kid": self.kid, "use": "sig", "alg": "RS256"}

    def sign(self, kid: str | None = None, **claims) -> str:
        now = int(time.time())
        body = {
            "iss": PROVIDER,
            "aud": AUDIENCE,
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "name": "Priya Shah",
            "groups": [FRONT_DOOR],
            "iat": now,
            "nbf": now - 5,
            "exp": now + 3600,
        } | claims
        return jwt.encode(body, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture
def identities_file(tmp_path: Path) -> Path:
    path = tmp_path / "identities.yaml"
    shutil.copy(REPO_ROOT / "config" / "identities.yaml", path)
    document = yaml.safe_load(path.read_text())
    document["staff_groups"] = {
        FRONT_DOOR: {"roles": ["front_door"]},
        HARLESDEN_MANAGERS: {
            "roles": ["team_manager"],
            "localities": ["brent-harlesden"],
            "teams": ["harlesden-early-help"],
        },
    }
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def provider():
    with JwksServer() as server:
        yield server


def _service(provider: JwksServer, identities_file: Path, tmp_path: Path):
    settings = HubSettings(
        var_dir=tmp_path,
        identities_file=identities_file,
        token_public_keys=TEST_PUBLIC_KEYS,
        oidc_issuer=PROVIDER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=provider.url,
        jwks_refresh_min_seconds=0,
    )
    return token_service(settings, issues=False, embedded=False)


def test_a_provider_token_gives_the_roles_localities_and_teams_of_its_groups(
    provider, identities_file, tmp_path
):
    key = ProviderKey()
    provider.publish({"keys": [key.jwk()]})
    tokens = _service(provider, identities_file, tmp_path)

    front_door = tokens.verify(key.sign())
    manager = tokens.verify(key.sign(sub="dev", name="Dev Patel", groups=[HARLESDEN_MANAGERS]))

    assert front_door.kind == "staff" and front_door.name == "Priya Shah"
    assert front_door.roles == ("front_door",) and front_door.authority_wide
    assert front_door.scopes == {"referrals:read", "referrals:triage", "chronology:read"}
    assert front_door.organisation_id is None
    assert manager.subject == "dev"
    assert manager.localities == ("brent-harlesden",)
    assert manager.teams == ("harlesden-early-help",)
    assert "allocations:write" in manager.scopes and "referrals:triage" not in manager.scopes
    both = tokens.verify(key.sign(sub="x", groups=[FRONT_DOOR, HARLESDEN_MANAGERS, CANTEEN]))
    assert both.roles == ("front_door", "team_manager")
    assert both.localities == ("brent-harlesden",)  # a limited group limits the person


def test_a_key_rotation_at_the_provider_is_picked_up_on_the_unknown_kid(
    provider, identities_file, tmp_path
):
    old, new = ProviderKey(), ProviderKey()
    provider.publish({"keys": [old.jwk()]})
    tokens = _service(provider, identities_file, tmp_path)
    assert tokens.verify(old.sign()).roles == ("front_door",)
    fetched = provider.fetches

    provider.publish({"keys": [new.jwk()]})
    with pytest.raises(UnknownSigningKey):
        tokens.verify(new.sign(), refresh=False)  # the event loop never waits on a fetch
    assert tokens.verify(new.sign()).roles == ("front_door",)
    assert provider.fetches == fetched + 1


def test_tokens_signed_by_any_other_key_or_for_anyone_else_are_refused(
    provider, identities_file, tmp_path
):
    key, stranger = ProviderKey(), ProviderKey()
    provider.publish({"keys": [key.jwk()]})
    tokens = _service(provider, identities_file, tmp_path)
    claims = jwt.decode(key.sign(), options={"verify_signature": False})
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = [
        stranger.sign(kid=key.kid),  # another key under the provider's kid
        stranger.sign(),  # another key under a kid of its own
        key.sign(iss="earlyhelp"),  # the provider's key posing as the hub
        key.sign(iss="https://evil.example/"),
        key.sign(aud="api://another-app"),
        key.sign(groups=[CANTEEN]),  # signed in, but given no role in the hub
        key.sign(groups="not-a-list-of-groups-but-a-group"),
        key.sign(exp="tomorrow"),
        key.sign(exp=int(time.time()) - 1),
        key.sign(nbf=int(time.time()) + 600),
        _hs256(claims, public_pem, key.kid),  # the public key passed off as an HMAC secret
        jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid}),
    ]
    for token in forged:
        with pytest.raises(InvalidToken):
            tokens.verify(token)


def _hs256(claims: dict, secret: bytes, kid: str) -> str:
    """Signed by hand: PyJWT itself refuses to use a public key as an HMAC secret."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_without_a_configured_provider_its_tokens_are_refused(provider, tmp_path):
    key = ProviderKey()
    provider.publish({"keys": [key.jwk()]})
    settings = HubSettings(var_dir=tmp_path, token_public_keys=TEST_PUBLIC_KEYS)
    tokens = token_service(settings, issues=False, embedded=False)
    with pytest.raises(InvalidToken, match="trusted issuer"):
        tokens.verify(key.sign())
    assert provider.fetches == 0


def test_made_up_kids_cannot_make_every_request_a_fetch(provider):
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    ring = KeyRing([RemoteKeys(provider.url, min_interval_s=30, clock=clock)])
    for kid in ("a", "b", "c"):
        with pytest.raises(UnknownSigningKey):
            ring.key(kid, refresh=True)
    assert provider.fetches == 1
    clock.now += 31
    with pytest.raises(UnknownSigningKey):
        ring.key("d", refresh=True)
    assert provider.fetches == 2
