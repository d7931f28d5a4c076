"""The HTTP ceiling: a FastAPI endpoint that does no work, served like the services.

`python -m tests.bench` runs it with uvicorn on uvloop + httptools, one worker,
next to intake, so the ratio intake req/s / bare req/s says how much of the
ceiling intake's own work (validation, the SQLite transaction, metrics, tracing,
logging) leaves. `/v1/referrals` is that bare endpoint. `/v1/referrals-validated`
is measured beside it for context only: the one piece of intake's work that no
design can skip, the body validated against intake's own `ReferralSubmission`,
declared the way intake declares it, and nothing else (no token, no database).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from intake.schemas import ReferralSubmission

app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/referrals", status_code=202)
async def accept(request: Request) -> JSONResponse:
    # Read the whole body, as intake must, but do nothing with it.
    body = await request.body()
    return JSONResponse({"accepted": True, "bytes": len(body)}, status_code=202)


@app.post("/v1/referrals-validated", status_code=202)
async def accept_validated(submission: ReferralSubmission) -> JSONResponse:
    return JSONResponse({"accepted": True, "children": len(submission.children)}, status_code=202)
