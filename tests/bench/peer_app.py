"""The peer intake is measured against: the same accept path on the `eventsourcing` library.

What a Python team would write with the best-known event-sourcing library instead
of the hub's own store (issue 19): a FastAPI app that checks an HS256 bearer token,
validates the body against intake's own `ReferralSubmission` (declared the way
intake declares it), and saves a new `Referral` aggregate through an
`eventsourcing` Application on SQLite, whose notification log stands for the
outbox. It does no matching, keeps no idempotency record and publishes nothing:
it is the least such a service would do, and intake is measured doing more.

`python -m tests.bench` serves it with uvicorn exactly as the services are served
(uvloop + httptools, one worker). `PEER_DATABASE` names its SQLite file and
`PEER_TOKEN_SECRET` the HS256 secret (`token()` makes a bearer for it).
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any
from uuid import UUID

import jwt
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

from intake.schemas import ReferralSubmission

AUDIENCE = "earlyhelp-intake"
ISSUER = "bench-peer"


class Referral(Aggregate):
    """A referral as received: one event holding the validated submission."""

    @event("Received")
    def __init__(self, submission: dict[str, Any]) -> None:
        self.submission = submission


class Referrals(Application):
    # The referral is saved once and never read back on this path.
    is_snapshotting_enabled = False


@cache
def _referrals() -> Referrals:
    """The application, made on the first request (importing this module makes nothing)."""
    return Referrals(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": os.environ.get("PEER_DATABASE", "peer.db"),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    )


def token(secret: str, subject: str = "bench-partner") -> str:
    """A bearer token the peer accepts, valid for an hour."""
    now = int(time.time())
    claims = {"sub": subject, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, secret, algorithm="HS256")


app = FastAPI(title="eventsourcing peer", openapi_url=None, docs_url=None, redoc_url=None)
_secret = os.environ.get("PEER_TOKEN_SECRET", "")


def _caller(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "a bearer token is required")
    try:
        claims = jwt.decode(
            authorization.removeprefix("Bearer "),
            _secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
        )
    except jwt.InvalidTokenError:
        raise HTTPException(401, "the bearer token is not valid") from None
    return claims["sub"]


# A plain `def`: FastAPI runs it on its thread pool, as the library's blocking SQLite
# recorder needs.
@app.post("/v1/referrals", status_code=202)
def accept(
    submission: ReferralSubmission, authorization: str | None = Header(default=None)
) -> JSONResponse:
    _caller(authorization)
    referral = Referral(submission.model_dump(mode="json"))
    _referrals().save(referral)
    referral_id: UUID = referral.id
    return JSONResponse({"referral_id": str(referral_id)}, status_code=202)
