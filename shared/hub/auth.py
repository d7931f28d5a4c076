"""Who is calling: partner systems and front-door staff, with OAuth2 client-credentials tokens.

Every caller is a client in the identities file (partners with an organisation
type, staff with roles that grant scopes); its secret is stored only as a
scrypt hash. `POST /v1/oauth/token` (RFC 6749 section 4.4) exchanges the
credentials for a short-lived signed JWT; every service verifies it with the
same key and checks the scopes each endpoint needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import jwt
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.contracts.codes import PartnerOrganisationType
from hub.contracts.identifiers import Slug
from hub.http.problems import Problem
from hub.settings import HubSettings

ISSUER = "earlyhelp"
AUDIENCE = "earlyhelp"
_ALGORITHM = "HS256"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

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


# Compared against when a client id is unknown, so that a wrong id costs as long as a
# wrong secret and the timing does not tell which client ids exist.
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

    @model_validator(mode="after")
    def _described(self) -> Client:
        if self.kind == "partner" and self.organisation_type is None:
            raise ValueError(f"partner {self.client_id} needs an organisation_type")
        if self.kind == "staff" and not self.roles:
            raise ValueError(f"staff member {self.client_id} needs at least one role")
        if self.kind == "partner" and (self.localities or self.teams):
            raise ValueError(f"partner {self.client_id} cannot have localities or teams")
        return self


class IdentitiesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Staff roles and the scopes each grants."
    )
    clients: tuple[Client, ...]

    @model_validator(mode="after")
    def _consistent(self) -> IdentitiesFile:
        ids = [c.client_id for c in self.clients]
        if len(ids) != len(set(ids)):
            raise ValueError("client ids must be unique")
        for client in self.clients:
            unknown = [r for r in client.roles if r not in self.roles]
            if unknown:
                raise ValueError(f"{client.client_id} has unknown roles: {', '.join(unknown)}")
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
    """The clients the hub knows, loaded once from the identities file."""

    def __init__(self, document: IdentitiesFile) -> None:
        self._roles = document.roles
        self._clients = {client.client_id: client for client in document.clients}

    @classmethod
    def load(cls, path: Path) -> Identities:
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise RuntimeError(
                f"identities file {path} not found (set EARLYHELP_IDENTITIES_FILE)"
            ) from exc
        return cls(IdentitiesFile.model_validate(raw))

    def client(self, client_id: str) -> Client | None:
        return self._clients.get(client_id)

    def granted_scopes(self, client: Client) -> frozenset[str]:
        by_role = (scope for role in client.roles for scope in self._roles[role])
        return frozenset((*client.scopes, *by_role))

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        client = self._clients.get(client_id)
        matches = verify_secret(secret, client.secret_hash if client else _DECOY_HASH)
        return client if client is not None and matches else None


# --- tokens --------------------------------------------------------------------------


class InvalidToken(Exception):
    """A bearer token that is missing, malformed, expired or not signed by the hub."""


class TokenService:
    # A partner sends the same token with every request for its lifetime; decoding and
    # checking it each time cost about a tenth of intake's CPU per referral.
    VERIFIED_CACHE_SIZE = 4096

    def __init__(
        self,
        signing_key: str,
        identities: Identities,
        ttl_seconds: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(signing_key) < 32:
            raise ValueError("the token signing key must be at least 32 characters")
        self._key = signing_key
        self.identities = identities
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        # token -> (principal, expiry); only byte-identical tokens verified before hit it.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(
        self,
        client: Client,
        requested: Iterable[str] | None = None,
        *,
        ttl_seconds: int | None = None,
    ) -> tuple[str, frozenset[str]]:
        """A signed token for `client` with the requested scopes (all it has when none)."""
        granted = self.identities.granted_scopes(client)
        scopes = granted if requested is None else frozenset(requested)
        if not scopes <= granted:
            raise PermissionError(" ".join(sorted(scopes - granted)))
        now = int(time.time())
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
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM), scopes

    def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at = cached
            if self._clock() < expires_at:
                return principal
            self._verified.pop(token, None)
            raise InvalidToken("Signature has expired")
        principal, expires_at = self._decode(token)
        with self._verified_lock:
            if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
                # Dicts keep insertion order: the oldest entry goes first.
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = (principal, expires_at)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                # Expiry is checked below against the service's clock, the one the cache
                # of verified tokens uses too, rather than twice against two clocks.
                options={"require": ["exp", "iat", "sub", "scope", "kind"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        if claims["kind"] not in ("partner", "staff"):
            raise InvalidToken("unknown kind of caller")
        if self._clock() >= claims["exp"]:
            raise InvalidToken("Signature has expired")
        principal = Principal(
            subject=claims["sub"],
            kind=claims["kind"],
            name=claims.get("name", claims["sub"]),
            scopes=frozenset(claims["scope"].split()),
            organisation_type=claims.get("org_type"),
            roles=tuple(claims.get("roles", ())),
            localities=tuple(claims.get("localities", ())),
            teams=tuple(claims.get("teams", ())),
        )
        return principal, float(claims["exp"])


def signing_key(settings: HubSettings) -> str:
    """The configured key; on the embedded default, one kept in var/ and shared by services."""
    if settings.jwt_signing_key.get_secret_value():
        return settings.jwt_signing_key.get_secret_value()
    key_file = settings.var_dir / "jwt-signing-key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        # Written to a private temporary file and linked into place, so that services
        # starting together agree on one key and none reads a half-written file.
        candidate = key_file.with_name(f".{key_file.name}.{secrets.token_hex(8)}")
        descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, secrets.token_urlsafe(48).encode())
        finally:
            os.close(descriptor)
        try:
            os.link(candidate, key_file)
        except FileExistsError:
            pass  # another service linked its key first: use that one
        finally:
            candidate.unlink()
    return key_file.read_text().strip()


def token_service(settings: HubSettings) -> TokenService:
    return TokenService(
        signing_key(settings),
        Identities.load(settings.identities_file),
        settings.token_ttl_seconds,
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
    description="A token from POST /v1/oauth/token (OAuth2 client credentials).",
)


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; 401 problem+json without a valid bearer token."""
    if credentials is None or not credentials.credentials:
        raise Problem.unauthorized("A bearer token is required: see POST /v1/oauth/token.")
    try:
        return _tokens(request).verify(credentials.credentials.strip())
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


token_router = APIRouter(prefix="/v1/oauth", tags=["access"])


@token_router.post(
    "/token",
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
        },
    },
)
async def issue_token(request: Request):
    """OAuth2 client credentials (RFC 6749 section 4.4), by HTTP Basic or form fields."""
    if request.headers.get("content-type", "").split(";")[0] != (
        "application/x-www-form-urlencoded"
    ):
        return _oauth_error(
            400, "invalid_request", "send application/x-www-form-urlencoded form fields"
        )
    raw = parse_qs((await request.body()).decode("utf-8", "replace"))
    form = {key: values[0] for key, values in raw.items()}
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is offered")
    credentials = _client_credentials(request, form)
    if credentials is None:
        return _oauth_error(401, "invalid_client", "client credentials are required")
    tokens = _tokens(request)
    client = tokens.identities.authenticate(*credentials)
    if client is None:
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    requested = form["scope"].split() if form.get("scope") else None
    try:
        token, scopes = tokens.issue(client, requested)
    except PermissionError as exc:
        return _oauth_error(400, "invalid_scope", f"not granted to this client: {exc}")
    body = TokenResponse(
        access_token=token, expires_in=tokens.ttl_seconds, scope=" ".join(sorted(scopes))
    )
    return JSONResponse(body.model_dump(), headers={"Cache-Control": "no-store"})
