"""What may be said about a failure outside the records: never a personal value.

An exception's text is written by whoever raised it, and often quotes what it
was working on: SQLAlchemy's messages carry the statement's bound parameters
(unless the engine hides them), PostgreSQL's `DETAIL` quotes the conflicting
key, pydantic quotes the input, an SMTP refusal quotes the recipient. Those
values are a child's or a family's personal data, and logs, dead-letter
headers, spans and delivery records are kept, shipped and read far more widely
than the records themselves.

So every place that reports a failure outside the records (log lines, the
`dlq_reason` and `dlq_stack` headers, notifications' `last_error`) goes
through `describe_error` and `error_stack`: the exception's class, and a
message only when the message is known to name nothing but schema, code or
infrastructure.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import traceback

import httpx
import psycopg
from kafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import StatementError

from hub.contracts.envelope import UndecodableMessage

# Messages these raise name infrastructure (hosts, ports, brokers, timeouts) or,
# for UndecodableMessage, the hub's own description that leaves inputs out.
_SAFE_MESSAGE_TYPES: tuple[type[BaseException], ...] = (
    UndecodableMessage,
    KafkaError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    ssl.SSLError,
    httpx.TransportError,
)
_CLIENT_SIDE_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
)
_MAX_CHARS = 1000


def describe_error(exc: BaseException) -> str:
    """`ClassName: safe message`, or just `ClassName` when its message cannot be vetted."""
    name = type(exc).__name__
    detail = _safe_detail(exc)
    text = f"{name}: {detail}" if detail else name
    text = " ".join(text.split())
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."


def error_stack(exc: BaseException, limit: int = 8) -> str:
    """Where it failed: for each exception in the chain, the innermost `limit` frames of
    the hub's own code (and the library frame that raised), each with its line of code,
    then the exception as `describe_error` gives it.

    Frames and source lines are code; no local variable and no exception message
    is included.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        chosen = [f for f in frames[:-1] if "site-packages" not in f.filename] + frames[-1:]
        listed = traceback.StackSummary.from_list(chosen[-limit:])
        parts.append("".join(listed.format()) + describe_error(current))
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return "\n-- raised while handling or from --\n".join(reversed(parts))


def _safe_detail(exc: BaseException) -> str:
    if isinstance(exc, StatementError):
        # With hide_parameters the message still holds the driver's text, which on
        # PostgreSQL quotes values (`DETAIL: Key (x)=(...)`, `invalid input syntax`).
        return _database_detail(exc.orig) if exc.orig is not None else ""
    if isinstance(exc, ValidationError):
        # Where and which rule, never the input nor a custom message that may quote it.
        failures = ", ".join(
            f"{'.'.join(map(str, error['loc'])) or '(root)'} ({error['type']})"
            for error in exc.errors(include_input=False, include_url=False, include_context=False)
        )
        return f"{exc.error_count()} invalid in {exc.title}: {failures}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return str(exc)  # smtplib's own words about a missing extension (STARTTLS, SMTPUTF8)
    if isinstance(exc, smtplib.SMTPException):
        return ""  # e.g. SMTPRecipientsRefused quotes the addresses
    if isinstance(exc, _SAFE_MESSAGE_TYPES):
        return str(exc)
    return ""


def _database_detail(orig: BaseException) -> str:
    """The driver error's class and what PostgreSQL or SQLite says about the schema only."""
    name = type(orig).__name__
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg: structured fields, none of them a value
        fields = {
            "sqlstate": getattr(orig, "sqlstate", None),
            "table": diag.table_name,
            "column": diag.column_name,
            "constraint": diag.constraint_name,
        }
        described = ", ".join(f"{key} {value}" for key, value in fields.items() if value)
        if described:
            return f"{name} ({described})"
        # No SQLSTATE: the client failed before the server answered (no connection, a
        # timeout), and says so about hosts and ports.
        return f"{name}: {orig}" if isinstance(orig, _CLIENT_SIDE_DATABASE_ERRORS) else name
    sqlite_code = getattr(orig, "sqlite_errorname", None)
    if sqlite_code is not None:
        # SQLite's own messages name tables, columns and constraints, not values; a
        # trigger's RAISE text is schema too.
        return f"{name} ({sqlite_code}): {orig}"
    return name
