"""create_app: the FastAPI application every service builds its HTTP API on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from hub.http.dependencies import judge_request_dates
from hub.http.health import PROBE_PATHS, DegradationCheck, ReadinessCheck, health_router
from hub.http.middleware import (
    BodySizeLimitMiddleware,
    MetricsMiddleware,
    ProbesFirstMiddleware,
    TracingMiddleware,
)
from hub.http.problems import install_problem_handlers

_NO_CHECKS: Mapping[str, ReadinessCheck] = MappingProxyType({})


def create_app(
    *,
    service_name: str,
    title: str,
    version: str,
    description: str,
    routers: Sequence[APIRouter],
    readiness_checks: Mapping[str, ReadinessCheck] = _NO_CHECKS,
    lifespan: Any = None,
    max_body_bytes: int = 1_000_000,
    metrics_registry: CollectorRegistry | None = None,
    readiness_timeout: float = 2.0,
    degradation_checks: Mapping[str, DegradationCheck] | None = None,
) -> FastAPI:
    """A FastAPI app with the hub's errors, limits, probes, metrics and tracing.

    Each request but the probes gets a SERVER span (see TracingMiddleware);
    spans are recorded once hub.observability.configure_tracing has run.
    """
    registry = metrics_registry if metrics_registry is not None else REGISTRY
    app = FastAPI(
        title=title,
        version=version,
        description=description,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(judge_request_dates)],
        # TracingMiddleware and MetricsMiddleware replace FastAPI's built-in
        # telemetry, which would otherwise switch itself on with a TracerProvider.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    for router in routers:
        app.include_router(router)
    app.include_router(
        health_router(
            readiness_checks,
            metrics_registry=registry,
            readiness_timeout=readiness_timeout,
            degradation_checks=degradation_checks,
        )
    )
    # Each add_middleware wraps the ones before it: the metrics see every
    # response, including the 413 and 500 problems the inner two produce, and
    # everything runs inside the request's span, so every log line has its trace id.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, service=service_name, registry=registry)
    app.add_middleware(TracingMiddleware, excluded_paths=PROBE_PATHS)
    # Outermost: the probes overtake a burst before any of its work is done.
    app.add_middleware(ProbesFirstMiddleware, probe_paths=PROBE_PATHS)
    return app
