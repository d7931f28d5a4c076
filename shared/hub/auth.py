"""Who is calling: partner systems and staff, with bearer tokens the hub can verify.

Every caller is a client in the identities file (partners with an organisation
type, staff with roles that grant scopes); its secret is stored only as a
scrypt hash. `POST /v1/oauth/token` (RFC 6749 section 4.4), served by the token
issuer alone (intake), exchanges the credentials for a short-lived JWT signed
with the issuer's private key; every service verifies it with the public keys
(`hub.tokens`) and checks the scopes each endpoint needs. Staff may instead sign
in with the council's own OpenID Connect provider, whose groups the identities
file maps to the hub's roles, localities and teams.

Revocation: the identities file is read again when it changes (and on SIGHUP).
A token whose client has gone, whose grants were narrowed, or that was issued
before the client's `not_before` is refused from then on, cached or not.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import math
import os
import secrets
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.identifiers import Slug
from hub.http.problems import Problem
from hub.ratelimit import AttemptLimiter
from hub.settings import HubSettings
from hub.tokens import (
    PUBLIC_KEYS_FILE,
    InvalidToken,
    KeyConfigurationError,
    KeyFile,
    KeyRing,
    PublicKeys,
    RemoteKeys,
    SigningKeys,
    StaticKeys,
    UnknownSigningKey,
    embedded_signing_keys,
    parse_public_jwks,
)
from hub.yaml_files import load_yaml

log = logging.getLogger(__name__)

ISSUER = "earlyhelp"
AUDIENCE = "earlyhelp"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

TOKEN_REQUESTS = Counter(
    "earlyhelp_token_requests",
    "Requests to POST /v1/oauth/token, by outcome (issued, invalid_client, rate_limited...).",
    ["outcome"],
)

# --- secrets -------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """A scrypt hash of a client secret, in the form the identities file stores."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# Compared against when a client id is unknown and no real check has been timed yet
# (see SecretChecks), so that a wrong id costs as long as a wrong secret and the timing
# does not tell which client ids exist.
_DECOY_HASH = hash_secret(secrets.token_urlsafe(16))


# --- identities ----------------------------------------------------------------------


class Client(BaseModel):
    """One entry of the identities file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: Slug
    kind: Literal["partner", "staff"]
    name: str = Field(min_length=1, max_length=200)
    organisation_type: PartnerOrganisationType | None = None
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    localities: tuple[Slug, ...] = Field(
        default=(),
        description="Staff only: the localities whose cases they see and (managers) work; "
        "none means the whole authority.",
    )
    teams: tuple[Slug, ...] = Field(
        default=(), description="Staff only: the teams whose cases they work."
    )
    secret_hash: str = Field(pattern=r"^scrypt\$")
    not_before: AwareDatetime | None = Field(
        default=None,
        description="Tokens issued to this client before this time are refused (revocation "
        "of every token it holds, e.g. after its secret leaked).",
    )

    @model_validator(mode="after")
    def _described(self) -> Client:
        if self.kind == "partner" and self.organisation_type is None:
            raise ValueError(f"partner {self.client_id} needs an organisation_type")
        if self.kind == "staff" and not self.roles:
            raise ValueError(f"staff member {self.client_id} needs at least one role")
        if self.kind == "partner" and (self.localities or self.teams):
            raise ValueError(f"partner {self.client_id} cannot have localities or teams")
        return self


class StaffGroup(BaseModel):
    """What membership of one group of the council's identity provider grants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: tuple[str, ...] = Field(min_length=1)
    localities: tuple[Slug, ...] = ()
    teams: tuple[Slug, ...] = ()


class IdentitiesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Staff roles and the scopes each grants."
    )
    clients: tuple[Client, ...]
    staff_groups: dict[str, StaffGroup] = Field(
        default_factory=dict,
        description="Groups (values of the OIDC groups claim) and the roles, localities and "
        "teams each grants to staff signing in with the council's identity provider.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> IdentitiesFile:
        ids = [c.client_id for c in self.clients]
        if len(ids) != len(set(ids)):
            raise ValueError("client ids must be unique")
        for client in self.clients:
            unknown = [r for r in client.roles if r not in self.roles]
            if unknown:
                raise ValueError(f"{client.client_id} has unknown roles: {', '.join(unknown)}")
        for group, grant in self.staff_groups.items():
            unknown = [r for r in grant.roles if r not in self.roles]
            if unknown:
                raise ValueError(f"staff group {group} has unknown roles: {', '.join(unknown)}")
        return self


@dataclass(frozen=True)
class Principal:
    """The verified caller of one request."""

    subject: str
    kind: Literal["partner", "staff"]
    name: str
    scopes: frozenset[str]
    organisation_type: str | None = None
    roles: tuple[str, ...] = ()
    localities: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()

    @property
    def authority_wide(self) -> bool:
        """Staff with no localities or teams named work across the whole authority."""
        return not self.localities and not self.teams

    @property
    def organisation_id(self) -> str | None:
        """A partner's organisation is its client id; staff act for the authority."""
        return self.subject if self.kind == "partner" else None


class Identities:
    """The clients the hub knows, as one reading of the identities file."""

    def __init__(self, document: IdentitiesFile) -> None:
        self._roles = document.roles
        self._clients = {client.client_id: client for client in document.clients}
        self._staff_groups = document.staff_groups

    @classmethod
    def load(cls, path: Path) -> Identities:
        try:
            raw = load_yaml(path.read_text())
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"identities file {path} not found (set EARLYHELP_IDENTITIES_FILE)"
            ) from exc
        return cls(IdentitiesFile.model_validate(raw))

    def client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def granted_scopes(self, client: Client) -> frozenset[str]:
        return self._scopes_of(client.roles, client.scopes)

    def _scopes_of(self, roles: Iterable[str], scopes: Iterable[str] = ()) -> frozenset[str]:
        by_role = (scope for role in roles for scope in self._roles[role])
        return frozenset((*scopes, *by_role))

    def principal(self, client: Client, scopes: frozenset[str]) -> Principal:
        return Principal(
            subject=client.client_id,
            kind=client.kind,
            name=client.name,
            scopes=scopes,
            organisation_type=(
                client.organisation_type.value if client.organisation_type else None
            ),
            roles=client.roles,
            localities=client.localities,
            teams=client.teams,
        )

    def admits(self, principal: Principal, issued_at: float) -> bool:
        """Whether a hub token for `principal`, issued at `issued_at`, still stands: its
        client is still there, not narrowed, and was not revoked after the token was issued."""
        client = self._clients.get(principal.subject)
        if client is None:
            return False
        if client.not_before is not None and issued_at < client.not_before.timestamp():
            return False
        current = self.principal(client, self.granted_scopes(client))
        return principal.scopes <= current.scopes and (
            principal.kind,
            principal.organisation_type,
            principal.roles,
            principal.localities,
            principal.teams,
        ) == (
            current.kind,
            current.organisation_type,
            current.roles,
            current.localities,
            current.teams,
        )

    def staff_member(self, subject: str, name: str, groups: Iterable[str]) -> Principal | None:
        """A member of staff signed in with the council's identity provider, with what the
        groups they belong to grant; None when no group of theirs is mapped.

        Localities and teams add up over the groups: one limited group limits the person
        even when another group of theirs is authority-wide (the narrower reading)."""
        grants = [self._staff_groups[g] for g in dict.fromkeys(groups) if g in self._staff_groups]
        if not grants:
            return None
        roles = tuple(dict.fromkeys(role for grant in grants for role in grant.roles))
        return Principal(
            subject=subject,
            kind="staff",
            name=name,
            scopes=self._scopes_of(roles),
            roles=roles,
            localities=tuple(dict.fromkeys(x for grant in grants for x in grant.localities)),
            teams=tuple(dict.fromkeys(x for grant in grants for x in grant.teams)),
        )


class IdentitiesWatch:
    """The identities file, read again when it changes (checked every `interval_s`) or when
    asked (SIGHUP). A file that has become invalid is reported and the last good reading
    kept, so that a typo does not lock every caller out."""

    def __init__(self, path: Path, interval_s: float = 5.0) -> None:
        self.path = path
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._stamp = self._stamp_of(path)
        self.current = Identities.load(path)

    @staticmethod
    def _stamp_of(path: Path) -> tuple[int, int, int] | None:
        try:
            stat = path.stat()  # follows symlinks: a Kubernetes ConfigMap swaps one
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def reload(self, *, force: bool = False) -> bool:
        """Read the file again if it changed (or always, with `force`); True if it did."""
        with self._lock:
            stamp = self._stamp_of(self.path)
            if stamp is None or (stamp == self._stamp and not force):
                return False
            self._stamp = stamp
            try:
                loaded = Identities.load(self.path)
            except Exception as exc:
                log.error(
                    "identities file %s is invalid, keeping the previous one: %s",
                    self.path,
                    type(exc).__name__,
                )
                return False
            self.current = loaded
            log.info("identities file %s reloaded", self.path)
            return True

    def run(self, stop: threading.Event) -> None:
        """A worker: look for changes until `stop` is set."""
        while not stop.wait(self._interval_s):
            self.reload()


# --- tokens --------------------------------------------------------------------------


class _HubClaims(BaseModel):
    """The claims of a hub token, type-checked: a well-signed token with, say, a string for
    `exp` is a bad token (401), not a server error."""

    model_config = ConfigDict(strict=True, extra="ignore")

    sub: str = Field(min_length=1)
    iat: int | float
    exp: int | float
    jti: str = Field(min_length=1)
    scope: str
    kind: Literal["partner", "staff"]
    name: str | None = None
    org_type: str | None = None
    roles: list[str] = []
    localities: list[str] = []
    teams: list[str] = []


class _Expiry(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    exp: int | float


@dataclass(frozen=True)
class ExternalIssuer:
    """The council's OpenID Connect provider, whose staff tokens the hub accepts."""

    issuer: str
    audience: str
    keys: KeyRing
    groups_claim: str = "groups"
    subject_claim: str = "sub"
    name_claim: str = "name"

    def principal(self, claims: Mapping[str, Any], identities: Identities) -> Principal:
        subject = claims.get(self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken(f"the {self.subject_claim} claim is missing")
        groups = claims.get(self.groups_claim, [])
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InvalidToken(f"the {self.groups_claim} claim is not a list of groups")
        name = claims.get(self.name_claim)
        principal = identities.staff_member(
            subject, name if isinstance(name, str) and name else subject, groups
        )
        if principal is None:
            raise InvalidToken("none of the person's groups is given a role in the hub")
        return principal


class TokenIssuer:
    """Mints the hub's tokens: only the issuer has one, holding the private keys."""

    def __init__(
        self,
        keys: SigningKeys,
        identities: IdentitiesWatch,
        ttl_seconds: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.identities = identities
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def issue(
        self,
        client: Client,
        requested: Iterable[str] | None = None,
        *,
        ttl_seconds: int | None = None,
    ) -> tuple[str, frozenset[str]]:
        """A signed token for `client` with the requested scopes (all it has when none)."""
        granted = self.identities.current.granted_scopes(client)
        scopes = granted if requested is None else frozenset(requested)
        if not scopes <= granted:
            raise PermissionError(" ".join(sorted(scopes - granted)))
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": client.client_id,
            "iat": now,
            "exp": now + (ttl_seconds or self.ttl_seconds),
            "jti": str(uuid.uuid4()),
            "scope": " ".join(sorted(scopes)),
            "kind": client.kind,
            "name": client.name,
        }
        if client.organisation_type is not None:
            claims["org_type"] = client.organisation_type.value
        if client.roles:
            claims["roles"] = list(client.roles)
        if client.localities:
            claims["localities"] = list(client.localities)
        if client.teams:
            claims["teams"] = list(client.teams)
        return self.keys.sign(claims), scopes


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    expires_at: float
    # The reading of the identities file the token was checked against: after a reload
    # the entry no longer counts, so the cache never outlives a revocation.
    identities: Identities


class TokenVerifier:
    """Checks a bearer token: the hub's (signed by the issuer's keys) or the council
    identity provider's (signed by its keys), never anyone else's."""

    # A partner sends the same token with every request for its lifetime; decoding and
    # checking it each time cost about a tenth of intake's CPU per referral.
    VERIFIED_CACHE_SIZE = 4096

    def __init__(
        self,
        identities: IdentitiesWatch,
        hub_keys: KeyRing,
        external: ExternalIssuer | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identities = identities
        self._hub_keys = hub_keys
        self._external = external
        self._clock = clock
        self._verified: dict[str, _Verified] = {}
        self._verified_lock = threading.Lock()

    def verify(self, token: str, *, refresh: bool = True) -> Principal:
        """The caller the token proves; InvalidToken otherwise. Without `refresh`, a token
        naming a key not yet known raises UnknownSigningKey instead of fetching keys (so
        that the event loop never waits on a fetch)."""
        identities = self.identities.current
        cached = self._verified.get(token)
        if cached is not None and cached.identities is identities:
            if self._clock() < cached.expires_at:
                return cached.principal
            self._verified.pop(token, None)
            raise InvalidToken("Signature has expired")
        principal, expires_at = self._decode(token, identities, refresh)
        with self._verified_lock:
            if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
                # Dicts keep insertion order: the oldest entry goes first.
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = _Verified(principal, expires_at, identities)
        return principal

    def _decode(self, token: str, identities: Identities, refresh: bool) -> tuple[Principal, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if not isinstance(kid, str):
            raise InvalidToken("the token names no key (kid)")
        if issuer == ISSUER:
            claims = self._checked(token, self._hub_keys.key(kid, refresh=refresh), AUDIENCE)
            try:
                hub = _HubClaims.model_validate(claims)
            except ValidationError as exc:
                raise InvalidToken("malformed claims") from exc
            principal = Principal(
                subject=hub.sub,
                kind=hub.kind,
                name=hub.name or hub.sub,
                scopes=frozenset(hub.scope.split()),
                organisation_type=hub.org_type,
                roles=tuple(hub.roles),
                localities=tuple(hub.localities),
                teams=tuple(hub.teams),
            )
            if not identities.admits(principal, hub.iat):
                raise InvalidToken("the client's access was revoked or changed")
            expires_at = hub.exp
        elif self._external is not None and issuer == self._external.issuer:
            external = self._external
            claims = self._checked(
                token, external.keys.key(kid, refresh=refresh), external.audience
            )
            try:
                expires_at = _Expiry.model_validate(claims).exp
            except ValidationError as exc:
                raise InvalidToken("malformed claims") from exc
            principal = external.principal(claims, identities)
        else:
            raise InvalidToken("not issued by a trusted issuer")
        if self._clock() >= expires_at:
            raise InvalidToken("Signature has expired")
        return principal, float(expires_at)

    def _checked(self, token: str, key: jwt.PyJWK, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                # The key's algorithm, never the one the token's header asks for.
                algorithms=[key.algorithm_name],
                audience=audience,
                # Expiry is checked against the service's clock, the one the cache of
                # verified tokens uses too, rather than twice against two clocks.
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc


class SecretChecksBusy(Exception):
    """Every secret-check thread is busy and the queue before them is full."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"secret checks busy; retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class SecretChecks:
    """Where client secrets are checked: a thread (or a few) of its own, never the event
    loop, behind a short queue. A request that finds the queue full is refused at once
    (SecretChecksBusy) rather than waiting: a burst of guesses from many addresses,
    which no per-address limit stops, then costs at most these threads' CPU, and the
    rest of the service keeps the remaining cores.

    An unknown client id holds its place in the queue and its thread for as long as a
    real check takes (the last measured one), without hashing: it answers after the
    same time as a wrong secret, and is refused as busy under the same load, but costs
    no CPU. Only the very first unknown id, before any real check was timed, hashes a
    decoy to learn how long one takes."""

    def __init__(self, threads: int, max_waiting: int) -> None:
        self._threads = threads
        self._capacity = threads + max_waiting
        # Counted on the event loop only: no lock needed.
        self._admitted = 0
        self._executor: ThreadPoolExecutor | None = None
        self._check_s: float | None = None

    async def authenticate(self, identities: Identities, client_id: str, secret: str):
        """The client whose secret this is, or None; SecretChecksBusy when full."""
        if self._admitted >= self._capacity:
            raise SecretChecksBusy(self._capacity / self._threads * (self._check_s or 0.1))
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="secret-check")
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._check, identities, client_id, secret
            )
        finally:
            self._admitted -= 1

    def _check(self, identities: Identities, client_id: str, secret: str) -> Client | None:
        client = identities.client(client_id)
        if client is None and self._check_s is not None:
            time.sleep(self._check_s)
            return None
        started = time.perf_counter()
        matches = verify_secret(secret, client.secret_hash if client else _DECOY_HASH)
        self._check_s = time.perf_counter() - started
        return client if client is not None and matches else None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class TokenService:
    """What a service holds of the token machinery: the identities, a verifier, and, in
    the token issuer alone, the issuer with its private keys, its attempt limits and the
    threads that check client secrets."""

    def __init__(
        self,
        verifier: TokenVerifier,
        issuer: TokenIssuer | None = None,
        *,
        attempts_per_address_per_minute: int = 60,
        failures_per_client_per_minute: int = 10,
        secret_check_threads: int = 1,
        secret_check_queue: int = 8,
    ) -> None:
        self.verifier = verifier
        self.issuer = issuer
        self.identities = verifier.identities
        self.attempts_by_address = AttemptLimiter(attempts_per_address_per_minute)
        self.failures_by_client = AttemptLimiter(failures_per_client_per_minute)
        self.secret_checks = SecretChecks(secret_check_threads, secret_check_queue)

    def verify(self, token: str, *, refresh: bool = True) -> Principal:
        return self.verifier.verify(token, refresh=refresh)

    async def authenticate(self, client_id: str, secret: str) -> Client | None:
        """Check a client secret on the secret-check threads: scrypt takes tens of
        milliseconds of CPU, which must not stall the event loop or the database reads.
        SecretChecksBusy when those threads have as much queued as they may."""
        return await self.secret_checks.authenticate(self.identities.current, client_id, secret)

    def close(self) -> None:
        self.secret_checks.close()


def _hub_key_sources(settings: HubSettings, *, embedded: bool) -> list[PublicKeys]:
    sources: list[PublicKeys] = []
    if settings.token_public_keys.strip():
        sources.append(StaticKeys(parse_public_jwks(settings.token_public_keys)))
    if settings.token_jwks_url:
        sources.append(
            RemoteKeys(settings.token_jwks_url, min_interval_s=settings.jwks_refresh_min_seconds)
        )
    if not sources and embedded:
        sources.append(KeyFile(settings.var_dir / PUBLIC_KEYS_FILE))
    return sources


def issuer_keys(settings: HubSettings, *, embedded: bool) -> SigningKeys:
    """The issuer's private keys: configured, or on the embedded default generated once."""
    configured = settings.token_signing_keys.get_secret_value()
    if configured.strip():
        return SigningKeys.from_json(configured)
    if not embedded:
        raise KeyConfigurationError(
            "EARLYHELP_TOKEN_SIGNING_KEYS is not set: outside the embedded SQLite default the "
            "token issuer must be given its private keys (`earlyhelp token-keys new`)"
        )
    return embedded_signing_keys(settings.var_dir)


def token_service(settings: HubSettings, *, issues: bool, embedded: bool) -> TokenService:
    """The token machinery of one service; KeyConfigurationError names what is missing.

    `issues`: this service is the token issuer (holds the private keys). `embedded`:
    the embedded default (SQLite), where keys may be generated into var_dir.
    """
    identities = IdentitiesWatch(settings.identities_file, settings.identities_reload_seconds)
    sources = _hub_key_sources(settings, embedded=embedded)
    issuer = None
    if issues:
        keys = issuer_keys(settings, embedded=embedded)
        # The issuer trusts its own keys first, then whatever else it is told to.
        sources.insert(0, StaticKeys(parse_public_jwks(keys.public_jwks())))
        issuer = TokenIssuer(keys, identities, settings.token_ttl_seconds)
    elif settings.token_signing_keys.get_secret_value():
        raise KeyConfigurationError(
            "EARLYHELP_TOKEN_SIGNING_KEYS is set, but only the token issuer (intake) may hold "
            "the private keys: give this service EARLYHELP_TOKEN_JWKS_URL or "
            "EARLYHELP_TOKEN_PUBLIC_KEYS instead"
        )
    if not sources:
        raise KeyConfigurationError(
            "no public keys to verify tokens with: set EARLYHELP_TOKEN_JWKS_URL (the issuer's "
            "/.well-known/jwks.json) or EARLYHELP_TOKEN_PUBLIC_KEYS"
        )
    verifier = TokenVerifier(identities, KeyRing(sources), external_issuer(settings))
    return TokenService(
        verifier,
        issuer,
        attempts_per_address_per_minute=settings.token_attempts_per_address_per_minute,
        failures_per_client_per_minute=settings.token_failures_per_client_per_minute,
        secret_check_threads=settings.token_secret_check_threads,
        secret_check_queue=settings.token_secret_check_queue,
    )


def external_issuer(settings: HubSettings) -> ExternalIssuer | None:
    """The council's identity provider, when one is configured (all three settings)."""
    given = {
        "EARLYHELP_OIDC_ISSUER": settings.oidc_issuer,
        "EARLYHELP_OIDC_AUDIENCE": settings.oidc_audience,
        "EARLYHELP_OIDC_JWKS_URL": settings.oidc_jwks_url,
    }
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise KeyConfigurationError(f"OpenID Connect sign-in also needs {', '.join(missing)}")
    if settings.oidc_issuer == ISSUER:
        raise KeyConfigurationError(f"EARLYHELP_OIDC_ISSUER cannot be the hub's own {ISSUER!r}")
    keys = RemoteKeys(settings.oidc_jwks_url, min_interval_s=settings.jwks_refresh_min_seconds)
    return ExternalIssuer(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        keys=KeyRing([keys]),
        groups_claim=settings.oidc_groups_claim,
        subject_claim=settings.oidc_subject_claim,
        name_claim=settings.oidc_name_claim,
    )


# --- HTTP ----------------------------------------------------------------------------


def _tokens(request: Request) -> TokenService:
    return request.app.state.runtime.tokens


# Declares the scheme in OpenAPI, so partners (and generated clients) see that every
# operation needs a bearer token; the checks and the problem responses are ours.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A token from POST /v1/oauth/token (OAuth2 client credentials), or a staff "
    "token from the council's identity provider where one is configured.",
)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; 401 problem+json without a valid bearer token."""
    if credentials is None or not credentials.credentials:
        raise Problem.unauthorized("A bearer token is required: see POST /v1/oauth/token.")
    token = credentials.credentials.strip()
    tokens = _tokens(request)
    try:
        try:
            return tokens.verify(token, refresh=False)
        except UnknownSigningKey:
            # A key this service has not seen (a rotation): fetched off the event loop.
            return await run_in_threadpool(tokens.verify, token)
    except InvalidToken as exc:
        raise Problem.unauthorized(
            "The bearer token is not valid or has expired.", error="invalid_token"
        ) from exc


def require_scopes(*needed: str):
    """A dependency giving the caller when the token carries every scope in `needed`."""

    async def check(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        missing = [scope for scope in needed if scope not in principal.scopes]
        if missing:
            raise Problem.forbidden(
                f"This needs the scope(s): {' '.join(missing)}.",
                extensions={"required_scopes": list(needed)},
            )
        return principal

    return check


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    # RFC 6749 section 5.2 fixes this error shape for the token endpoint.
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="earlyhelp"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except ValueError:
            return None
        client_id, _, secret = decoded.partition(":")
        return client_id, secret
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


# Mounted by the token issuer (intake) alone: the other services only verify.
token_router = APIRouter(tags=["access"])


@token_router.get(
    "/.well-known/jwks.json",
    summary="The public keys that verify the hub's tokens (JWK Set, RFC 7517)",
    responses={200: {"content": {"application/json": {}}}},
)
async def public_keys(request: Request) -> JSONResponse:
    """Two keys during a rotation: the one that signs and the one it replaces. Services
    (and partners who want to check a token themselves) fetch this and cache it."""
    issuer = _tokens(request).issuer
    if issuer is None:
        raise Problem.not_found("This service does not issue tokens.")
    return JSONResponse(issuer.keys.public_jwks(), headers={"Cache-Control": "max-age=300"})


def _too_many(wait_s: float, limited: str) -> Problem:
    TOKEN_REQUESTS.labels(outcome=f"rate_limited_{limited}").inc()
    return Problem(
        429,
        detail="Too many token requests: wait for the time in Retry-After, and keep a token "
        "for its lifetime rather than asking for one per request.",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


def _busy(wait_s: float) -> Problem:
    TOKEN_REQUESTS.labels(outcome="busy").inc()
    return Problem(
        503,
        detail="Too many token requests are being checked at once: try again after the time "
        "in Retry-After.",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )


@token_router.post(
    "/v1/oauth/token",
    response_model=TokenResponse,
    summary="Exchange client credentials for a bearer token",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type"],
                        "properties": {
                            "grant_type": {"type": "string", "enum": ["client_credentials"]},
                            "client_id": {"type": "string"},
                            "client_secret": {"type": "string"},
                            "scope": {"type": "string", "example": "referrals:write"},
                        },
                    }
                }
            },
        },
        "responses": {
            "400": {"description": "RFC 6749 error (e.g. unsupported_grant_type)"},
            "401": {"description": "invalid_client"},
            "429": {
                "description": "Too many attempts from this address or with this client id "
                "(problem+json, with Retry-After)"
            },
            "503": {
                "description": "Too many token requests being checked at once "
                "(problem+json, with Retry-After)"
            },
        },
    },
)
async def issue_token(request: Request):
    """OAuth2 client credentials (RFC 6749 section 4.4), by HTTP Basic or form fields."""
    tokens = _tokens(request)
    address = request.client.host if request.client else "unknown"
    wait_s = tokens.attempts_by_address.attempt(address)
    if wait_s:
        raise _too_many(wait_s, "address")
    if request.headers.get("content-type", "").split(";")[0] != (
        "application/x-www-form-urlencoded"
    ):
        TOKEN_REQUESTS.labels(outcome="invalid_request").inc()
        return _oauth_error(
            400, "invalid_request", "send application/x-www-form-urlencoded form fields"
        )
    raw = parse_qs((await request.body()).decode("utf-8", "replace"))
    form = {key: values[0] for key, values in raw.items()}
    if form.get("grant_type") != "client_credentials":
        TOKEN_REQUESTS.labels(outcome="invalid_request").inc()
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is offered")
    credentials = _client_credentials(request, form)
    if credentials is None:
        TOKEN_REQUESTS.labels(outcome="invalid_client").inc()
        return _oauth_error(401, "invalid_client", "client credentials are required")
    client_id, secret = credentials
    # The attempt is counted before the check and given back if the secret was right:
    # counted only after a failure, every guess of a concurrent burst would pass the
    # limit before the first of them had failed.
    wait_s = tokens.failures_by_client.attempt(client_id)
    if wait_s:
        raise _too_many(wait_s, "client")
    try:
        client = await tokens.authenticate(client_id, secret)
    except SecretChecksBusy as busy:
        tokens.failures_by_client.refund(client_id)
        raise _busy(busy.retry_after_s) from None
    if client is None:
        TOKEN_REQUESTS.labels(outcome="invalid_client").inc()
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    tokens.failures_by_client.refund(client_id)
    requested = form["scope"].split() if form.get("scope") else None
    issuer = tokens.issuer
    assert issuer is not None, "the token endpoint is mounted only where tokens are issued"
    try:
        token, scopes = issuer.issue(client, requested)
    except PermissionError as exc:
        TOKEN_REQUESTS.labels(outcome="invalid_scope").inc()
        return _oauth_error(400, "invalid_scope", f"not granted to this client: {exc}")
    TOKEN_REQUESTS.labels(outcome="issued").inc()
    body = TokenResponse(
        access_token=token, expires_in=issuer.ttl_seconds, scope=" ".join(sorted(scopes))
    )
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})


def reload_identities_on_sighup(identities: IdentitiesWatch) -> None:
    """`kill -HUP <pid>` reads the identities file again at once (from uvicorn's main
    thread; elsewhere, as in tests, the periodic check alone applies)."""
    if threading.current_thread() is not threading.main_thread():
        return
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: identities.reload(force=True)
    )


def embedded_issuer(settings: HubSettings) -> TokenIssuer:
    """The embedded default's issuer, with the keys intake generates (or has) in var_dir:
    for `earlyhelp dev`, which writes demo tokens before the services start."""
    identities = IdentitiesWatch(settings.identities_file, settings.identities_reload_seconds)
    return TokenIssuer(issuer_keys(settings, embedded=True), identities, settings.token_ttl_seconds)
