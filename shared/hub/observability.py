"""Logging and tracing set-up shared by every service and by the Kafka parts.

One JSON object per log line, each carrying the trace and span ids of the
current OpenTelemetry span, so a log line can be found from a trace and back.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import TextIO

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

_W3C_PROPAGATOR = TraceContextTextMapPropagator()
_tracing_lock = threading.Lock()


class TraceContextFilter(logging.Filter):
    """Adds `trace_id` and `span_id` of the current span to every record it sees.

    Installed on the handler rather than on loggers: a logger's filters do not
    apply to records that propagate up from its children.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            if not hasattr(record, "trace_id"):
                record.trace_id = trace.format_trace_id(span_context.trace_id)
            if not hasattr(record, "span_id"):
                record.span_id = trace.format_span_id(span_context.span_id)
        return True


class _HubHandler(logging.StreamHandler):
    """Marks the handler configure_logging owns, so a second call replaces it."""


def configure_logging(
    service_name: str,
    level: str = "INFO",
    json_logs: bool = True,
    *,
    stream: TextIO | None = None,
) -> None:
    """Send the root logger and uvicorn's loggers to one handler on `stream` (stderr).

    Idempotent. Run uvicorn with `log_config=None`: its default config would
    otherwise replace these handlers when the server starts.
    """
    handler = _HubHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(_json_formatter(service_name) if json_logs else _text_formatter())

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
        if isinstance(existing, _HubHandler):
            existing.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(level.upper())
        uvicorn_logger.propagate = True
    # Python prints an uncaught exception of a thread with its text to stderr.
    threading.excepthook = _log_thread_failure


def _log_thread_failure(args: threading.ExceptHookArgs) -> None:
    """A background thread died: say so in a log line that carries no exception text."""
    from hub.privacy import describe_error, error_stack

    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("hub.threads").critical(
        "thread %s died: %s",
        name,
        describe_error(args.exc_value),
        extra={"stack": error_stack(args.exc_value)},
    )


def _json_formatter(service_name: str) -> logging.Formatter:
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields={"service": service_name},
        timestamp=True,
        # uvicorn attaches an ANSI-coloured copy of every message.
        reserved_attrs=[*RESERVED_ATTRS, "taskName", "color_message"],
    )


def _text_formatter() -> logging.Formatter:
    return logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [trace_id=%(trace_id)s] %(message)s",
        defaults={"trace_id": "-"},
    )


def configure_tracing(service_name: str) -> trace.TracerProvider:
    """Install the process-wide TracerProvider; export over OTLP/HTTP only when asked.

    Spans are created even without an exporter, so logs and outgoing messages
    still carry trace ids. OpenTelemetry allows one global provider per
    process: a second call returns the first provider unchanged.
    """
    with _tracing_lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            return current
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        if otlp_trace_export_requested():
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        return provider


def otlp_trace_export_requested() -> bool:
    """Whether the standard OTEL_* variables ask for OTLP trace export."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits, or None outside any span."""
    span_context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else None


# What the hub stores and forwards of a `tracestate`: the W3C asks every hop to carry
# at least 512 characters and lets it drop the header when it cannot carry it all.
TRACESTATE_MAX_CHARS = 512


def current_traceparent() -> tuple[str | None, str | None]:
    """W3C `traceparent` and `tracestate` of the current span, for message headers.

    A `tracestate` longer than TRACESTATE_MAX_CHARS is left out: a partner's
    oversized header must not make its referral (or any event) fail to store.
    """
    carrier: dict[str, str] = {}
    _W3C_PROPAGATOR.inject(carrier)
    tracestate = carrier.get("tracestate")
    if tracestate is not None and len(tracestate) > TRACESTATE_MAX_CHARS:
        tracestate = None
    return carrier.get("traceparent"), tracestate


def context_from_traceparent(traceparent: str | None, tracestate: str | None = None) -> Context:
    """A context whose spans continue the trace of a received message.

    A missing or malformed traceparent gives an empty context: spans started
    in it begin a new trace instead of failing the consumer.
    """
    carrier = {"traceparent": traceparent or ""}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _W3C_PROPAGATOR.extract(carrier, context=Context())
