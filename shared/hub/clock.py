"""The one clock of the hub: every "now" outside a request comes from here.

In a request, the `hub.http.dependencies.clock` dependency (the `Now` type) calls
it, so that a test overrides the time of one app; background workers take a
clock callable that defaults to it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The time now, in UTC."""
    return datetime.now(UTC)
