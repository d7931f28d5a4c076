"""Signing and verifying bearer tokens with asymmetric keys.

Only the token issuer (intake, which serves `POST /v1/oauth/token`) holds the
private keys: Ed25519 (EdDSA) keys kept as a JWK Set, the first of which signs.
Every service verifies with public keys only, taken from configuration, from
the issuer's `/.well-known/jwks.json`, or (on the embedded default) from the
public key file the issuer writes beside its private one. A service without a
private key cannot mint a token any other service would accept.

Public keys are looked up by the token's `kid`; an unknown `kid` makes the
verifier fetch the key set again (at most once per configured interval), which
is how a key rotation reaches every service without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

SIGNING_ALGORITHM = "EdDSA"
# What an external identity provider may sign with: never a shared-secret (HS*) or `none`.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")


class KeyConfigurationError(ValueError):
    """Key material that is missing, unreadable or of the wrong kind."""


class InvalidToken(Exception):
    """A bearer token that is malformed, expired, revoked or not signed by a trusted key."""


class UnknownSigningKey(InvalidToken):
    """A token names a `kid` none of the known keys has (perhaps not fetched yet)."""


# --- key material ---------------------------------------------------------------------


def _thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint of an OKP key: a `kid` that names the key itself."""
    canonical = json.dumps(
        {name: public_jwk[name] for name in ("crv", "kty", "x")},
        separators=(",", ":"),
        sort_keys=True,
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_signing_key() -> dict[str, Any]:
    """A new private Ed25519 JWK with its `kid`, `alg` and `use`."""
    private = OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate(), as_dict=True)
    return {**private, "kid": _thumbprint(private), "alg": SIGNING_ALGORITHM, "use": "sig"}


def public_part(private_jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The public half of a private JWK: everything but the private members."""
    private_members = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    return {name: value for name, value in private_jwk.items() if name not in private_members}


class SigningKeys:
    """The issuer's private keys, a JWK Set: the first signs, every one is published."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        entries = list(jwks.get("keys") or [])
        if not entries:
            raise KeyConfigurationError("the signing key set holds no key")
        if len(entries) > 2:
            raise KeyConfigurationError(
                "the signing key set holds more than two keys (the new one and the one it replaces)"
            )
        self._public = []
        self._signers = []
        for entry in entries:
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519" or "d" not in entry:
                raise KeyConfigurationError("every signing key must be a private Ed25519 JWK")
            if not entry.get("kid"):
                raise KeyConfigurationError("every signing key needs a kid")
            key = jwt.PyJWK.from_dict({**entry, "alg": SIGNING_ALGORITHM})
            self._signers.append((entry["kid"], key.key))
            self._public.append(public_part({**entry, "alg": SIGNING_ALGORITHM, "use": "sig"}))

    @classmethod
    def from_json(cls, text: str) -> SigningKeys:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise KeyConfigurationError("the signing keys are not a JSON JWK Set") from exc
        if not isinstance(document, dict):
            raise KeyConfigurationError("the signing keys are not a JSON JWK Set")
        return cls(document)

    def sign(self, claims: Mapping[str, Any]) -> str:
        kid, key = self._signers[0]
        return jwt.encode(dict(claims), key, algorithm=SIGNING_ALGORITHM, headers={"kid": kid})

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [dict(entry) for entry in self._public]}


def parse_public_jwks(document: Mapping[str, Any] | str) -> dict[str, jwt.PyJWK]:
    """kid -> public key of a JWK Set; keys with private members or no kid are refused."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise KeyConfigurationError("the public keys are not a JSON JWK Set") from exc
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeyConfigurationError("the public keys are not a JWK Set ({'keys': [...]})")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or not entry.get("kid"):
            continue  # a provider may publish keys for other uses; a kid-less key is not ours
        if entry.get("use", "sig") != "sig":
            continue
        if public_part(entry) != dict(entry):
            raise KeyConfigurationError(f"key {entry['kid']} carries private key material")
        try:
            key = jwt.PyJWK.from_dict(dict(entry))
        except jwt.PyJWTError as exc:
            raise KeyConfigurationError(f"key {entry['kid']} is not a usable JWK: {exc}") from exc
        if key.algorithm_name not in ASYMMETRIC_ALGORITHMS:
            raise KeyConfigurationError(f"key {entry['kid']} is not an asymmetric signing key")
        keys[entry["kid"]] = key
    return keys


# --- where verifiers find public keys -------------------------------------------------


class PublicKeys(Protocol):
    """A source of public keys by kid, which can be asked to look again."""

    def get(self, kid: str) -> jwt.PyJWK | None: ...

    def refresh(self) -> None: ...


class StaticKeys:
    """Keys given by configuration; looking again changes nothing."""

    def __init__(self, keys: Mapping[str, jwt.PyJWK]) -> None:
        self._keys = dict(keys)

    def get(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    def refresh(self) -> None:
        return None


class _Refreshing:
    """Keys loaded lazily and again on an unknown kid, no more often than `min_interval_s`,
    so that tokens with made-up kids cannot turn every request into a fetch."""

    def __init__(self, min_interval_s: float, clock: Callable[[], float]) -> None:
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._loaded_at = -float("inf")
        self._lock = threading.Lock()

    def _load(self) -> dict[str, jwt.PyJWK]:
        raise NotImplementedError

    def get(self, kid: str) -> jwt.PyJWK | None:
        keys = self._keys
        return None if keys is None else keys.get(kid)

    def refresh(self) -> None:
        with self._lock:
            if self._clock() - self._loaded_at < self._min_interval_s:
                return
            self._loaded_at = self._clock()
            self._keys = self._load()


class KeyFile(_Refreshing):
    """The public key set the embedded issuer writes into var_dir."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(0.0, clock)  # a local file: cheap to read again
        self.path = path

    def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            return parse_public_jwks(self.path.read_text())
        except FileNotFoundError:
            return {}


class RemoteKeys(_Refreshing):
    """A JWK Set fetched over HTTP(S): the hub issuer's or an identity provider's."""

    def __init__(
        self,
        url: str,
        *,
        min_interval_s: float,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(min_interval_s, clock)
        self.url = url
        self._timeout_s = timeout_s

    def _load(self) -> dict[str, jwt.PyJWK]:
        try:
            response = httpx.get(self.url, timeout=self._timeout_s, follow_redirects=False)
            response.raise_for_status()
            return parse_public_jwks(response.json())
        except (httpx.HTTPError, ValueError):
            # Keep what was known: an unreachable key server must not unlearn good keys.
            return self._keys or {}


class KeyRing:
    """Several sources of one issuer's public keys, asked in turn."""

    def __init__(self, sources: Iterable[PublicKeys]) -> None:
        self._sources = list(sources)

    def get(self, kid: str) -> jwt.PyJWK | None:
        for source in self._sources:
            key = source.get(kid)
            if key is not None:
                return key
        return None

    def key(self, kid: str, *, refresh: bool) -> jwt.PyJWK:
        """The key for `kid`; with `refresh`, looks again once before giving up."""
        key = self.get(kid)
        if key is None and refresh:
            for source in self._sources:
                source.refresh()
            key = self.get(kid)
        if key is None:
            raise UnknownSigningKey(kid)
        return key


# --- the embedded default ---------------------------------------------------------------

SIGNING_KEYS_FILE = "token-signing-keys.json"
PUBLIC_KEYS_FILE = "token-public-keys.json"


def embedded_signing_keys(var_dir: Path) -> SigningKeys:
    """The embedded issuer's keys, generated into var_dir once (mode 0600), with the public
    key set written beside them for the other services on this machine."""
    key_file = var_dir / SIGNING_KEYS_FILE
    if not key_file.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        # Written to a private temporary file and linked into place, so that processes
        # starting together agree on one key and none reads a half-written file.
        candidate = key_file.with_name(f".{key_file.name}.{secrets.token_hex(8)}")
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, json.dumps({"keys": [new_signing_key()]}).encode())
        finally:
            os.close(descriptor)
        try:
            os.link(candidate, key_file)
        except FileExistsError:
            pass  # another process linked its keys first: use those
        finally:
            candidate.unlink()
    keys = SigningKeys.from_json(key_file.read_text())
    public_file = var_dir / PUBLIC_KEYS_FILE
    staged = public_file.with_name(f".{public_file.name}.{secrets.token_hex(8)}")
    staged.write_text(json.dumps(keys.public_jwks()))
    staged.replace(public_file)
    return keys
