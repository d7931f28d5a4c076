"""The HTTP ceiling: a FastAPI endpoint that does no work, served like the services.

`python -m tests.bench` runs it with uvicorn on uvloop + httptools, one worker,
next to intake, so the ratio intake req/s / bare req/s says how much of the
ceiling intake's own work (validation, the SQLite transaction, metrics, tracing,
logging) leaves. `/v1/referrals` is that bare endpoint; `/v1/referrals-sync` is
measured beside it for context only (a `def` endpoint with a parsed JSON body).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/referrals", status_code=202)
async def accept(request: Request) -> JSONResponse:
    # Read the whole body, as intake must, but do nothing with it.
    body = await request.body()
    return JSONResponse({"accepted": True, "bytes": len(body)}, status_code=202)


@app.post("/v1/referrals-sync", status_code=202)
def accept_sync(body: dict) -> dict:
    # For context only: a plain `def` endpoint (run in the threadpool, as intake's is)
    # with the body parsed as JSON; the architecture brief's 4,600 req/s resembles it.
    return {"accepted": True, "fields": len(body)}
