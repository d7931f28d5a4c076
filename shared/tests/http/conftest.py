"""A small service built with create_app, and ways to observe its spans and logs."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Literal

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Header, HTTPException, Query
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from hub.http import Problem, ReadinessCheck, create_app, problem_responses
from hub.observability import UVICORN_LOGGERS, configure_tracing, current_traceparent


class Child(BaseModel):
    nhs_number: str = Field(pattern=r"^\d{10}$")
    given_name: str = Field(min_length=1)


class ReferralIn(BaseModel):
    partner: Literal["health", "police", "school"]
    children: list[Child] = Field(min_length=1)
    concern: str


router = APIRouter(prefix="/v1", tags=["referrals"])


@router.post("/referrals", status_code=201, responses=problem_responses(409))
async def submit_referral(
    referral: ReferralIn,
    idempotency_key: Annotated[str, Header(min_length=8)],
    priority: Annotated[int, Query(ge=1, le=3)] = 2,
) -> dict[str, int]:
    return {"children": len(referral.children)}


@router.get("/referrals/{referral_id}", responses=problem_responses(404))
async def get_referral(referral_id: int) -> dict[str, int]:
    raise Problem.not_found(f"Referral {referral_id} does not exist.")


@router.post("/uploads")
async def upload(body: dict[str, str]) -> dict[str, int]:
    return {"fields": len(body)}


@router.get("/bad-request", include_in_schema=False)
async def bad_request() -> None:
    raise HTTPException(400, "The application's own 400")


@router.get("/broken")
async def broken() -> None:
    raise RuntimeError("database said: no such child Jane Doe")


@router.get("/whoami")
async def whoami() -> dict[str, str | None]:
    logging.getLogger("tests.whoami").info("handling whoami")
    traceparent, _ = current_traceparent()
    return {"traceparent": traceparent}


class RecordedSpans(SpanProcessor):
    """Keeps the spans that end while a test is recording, and no others."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if self.spans is not None:
            self.spans.append(span)


@pytest.fixture(scope="session")
def tracer_provider() -> TracerProvider:
    provider = configure_tracing("hub-http-tests")
    assert isinstance(provider, TracerProvider)
    return provider


@pytest.fixture(scope="session")
def span_recorder(tracer_provider: TracerProvider) -> RecordedSpans:
    recorder = RecordedSpans()
    tracer_provider.add_span_processor(recorder)
    return recorder


@pytest.fixture
def recorded_spans(span_recorder: RecordedSpans) -> Iterator[list[ReadableSpan]]:
    span_recorder.spans = []
    yield span_recorder.spans
    span_recorder.spans = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(registry: CollectorRegistry, tracer_provider: TracerProvider) -> AppFactory:
    def make(
        readiness_checks: dict[str, ReadinessCheck] | None = None, **options: object
    ) -> FastAPI:
        return create_app(
            service_name="testsvc",
            title="Test service",
            version="1.2.3",
            description="A service built only for the chassis tests.",
            routers=[router],
            readiness_checks=readiness_checks or {},
            metrics_registry=registry,
            **options,
        )

    return make


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(max_body_bytes=1_000)) as test_client:
        yield test_client


@pytest.fixture
def make_client() -> Callable[[FastAPI], httpx.AsyncClient]:
    return client_for


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testsvc")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in UVICORN_LOGGERS)]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    saved_thread_hook = threading.excepthook
    yield
    threading.excepthook = saved_thread_hook
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
