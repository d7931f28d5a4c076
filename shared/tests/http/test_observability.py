"""Trace continuation, server spans, and JSON log lines that carry the trace id."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from hub.observability import (
    configure_logging,
    context_from_traceparent,
    current_traceparent,
    otlp_trace_export_requested,
    tracer,
)

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
INCOMING = f"00-{TRACE_ID}-b7ad6b7169203331-01"


async def test_incoming_traceparent_is_continued(
    client: httpx.AsyncClient, recorded_spans: list[ReadableSpan]
) -> None:
    response = await client.get("/v1/whoami", headers={"traceparent": INCOMING})

    traceparent = response.json()["traceparent"]
    assert traceparent.split("-")[1] == TRACE_ID
    [server_span] = [span for span in recorded_spans if span.kind is SpanKind.SERVER]
    assert server_span.name == "GET /v1/whoami"
    assert server_span.parent is not None
    assert format(server_span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert server_span.attributes is not None
    assert server_span.attributes["http.route"] == "/v1/whoami"
    assert server_span.attributes["http.response.status_code"] == 200


async def test_without_traceparent_a_new_trace_starts(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/whoami")).json()["traceparent"]
    second = (await client.get("/v1/whoami")).json()["traceparent"]

    assert first.split("-")[1] != second.split("-")[1]


async def test_server_errors_mark_the_span_and_probes_are_not_traced(
    client: httpx.AsyncClient, recorded_spans: list[ReadableSpan]
) -> None:
    await client.get("/v1/broken")
    await client.get("/healthz")
    await client.get("/metrics")

    assert [span.name for span in recorded_spans] == ["GET /v1/broken"]
    assert recorded_spans[0].status.status_code is StatusCode.ERROR


@pytest.mark.usefixtures("restore_logging")
async def test_log_lines_are_json_with_the_request_trace_id(
    make_app: Callable[..., FastAPI], make_client: Callable[[FastAPI], httpx.AsyncClient]
) -> None:
    stream = io.StringIO()
    configure_logging("testsvc", stream=stream)
    async with make_client(make_app()) as client:
        await client.get("/v1/whoami", headers={"traceparent": INCOMING})
        await client.get("/v1/broken", headers={"traceparent": INCOMING})

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [handled] = [line for line in lines if line["logger"] == "tests.whoami"]
    assert handled["message"] == "handling whoami"
    assert handled["level"] == "INFO"
    assert handled["service"] == "testsvc"
    assert handled["trace_id"] == TRACE_ID
    assert len(handled["span_id"]) == 16
    assert handled["timestamp"].endswith("+00:00")
    [error] = [line for line in lines if line["logger"] == "hub.http"]
    assert error["level"] == "ERROR"
    assert error["trace_id"] == TRACE_ID
    # The error's class and its stack, never its text (which quoted a child) nor exc_info.
    assert error["message"].endswith(": RuntimeError")
    assert error["stack"].endswith("\nRuntimeError")
    assert "exc_info" not in error
    assert "Jane Doe" not in error["message"]


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_is_idempotent_and_takes_over_uvicorn() -> None:
    stream = io.StringIO()
    configure_logging("testsvc", level="debug")
    configure_logging("testsvc", stream=stream)

    logging.getLogger("uvicorn.access").info("GET /v1/referrals 200")
    logging.getLogger("uvicorn.error").info("Started server process", extra={"color_message": "x"})

    assert len(logging.getLogger().handlers) == 1
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.access", "GET /v1/referrals 200"),
        ("uvicorn.error", "Started server process"),
    ]
    assert "color_message" not in lines[1]
    assert "trace_id" not in lines[0]


@pytest.mark.usefixtures("restore_logging")
def test_a_thread_that_dies_is_logged_without_its_exception_text() -> None:
    stream = io.StringIO()
    configure_logging("testsvc", stream=stream)

    def work() -> None:
        raise RuntimeError("no such child Jane Doe")

    thread = threading.Thread(target=work, name="testsvc-outbox-relay")
    thread.start()
    thread.join()

    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert line["level"] == "CRITICAL"
    assert line["message"] == "thread testsvc-outbox-relay died: RuntimeError"
    assert line["stack"].endswith("\nRuntimeError")
    # The stack's lines of code may quote the source; never the exception's text.
    assert "Jane Doe" not in line["message"]


@pytest.mark.usefixtures("restore_logging")
def test_plain_text_logs_for_local_runs() -> None:
    stream = io.StringIO()
    configure_logging("testsvc", json_logs=False, stream=stream)

    logging.getLogger("tests").warning("plain")

    assert stream.getvalue().rstrip().endswith("WARNING tests [trace_id=-] plain")


@pytest.mark.usefixtures("tracer_provider")
def test_traceparent_helpers_carry_a_trace_across_a_message() -> None:
    with tracer("tests.producer").start_as_current_span("publish"):
        traceparent, tracestate = current_traceparent()
    assert traceparent is not None

    with tracer("tests.consumer").start_as_current_span(
        "consume", context=context_from_traceparent(traceparent, tracestate)
    ):
        continued, _ = current_traceparent()

    assert continued is not None
    assert continued.split("-")[1] == traceparent.split("-")[1]
    assert continued.split("-")[2] != traceparent.split("-")[2]


def test_no_current_span_gives_no_traceparent() -> None:
    assert current_traceparent() == (None, None)


@pytest.mark.parametrize("broken", [None, "", "not-a-traceparent"])
@pytest.mark.usefixtures("tracer_provider")
def test_a_broken_traceparent_starts_a_new_trace(broken: str | None) -> None:
    with tracer("tests.consumer").start_as_current_span(
        "consume", context=context_from_traceparent(broken)
    ):
        traceparent, _ = current_traceparent()

    assert traceparent is not None


@pytest.mark.parametrize(
    ("environment", "requested"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
    ],
)
def test_otlp_export_only_when_the_environment_asks(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], requested: bool
) -> None:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert otlp_trace_export_requested() is requested
