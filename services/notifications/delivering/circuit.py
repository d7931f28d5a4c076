"""The circuit breaker: an endpoint that keeps failing is left alone for a while."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from notifications.delivering.common import (
    log,
)
from notifications.tables import (
    endpoints,
)


class Circuit:
    def _trip(self, conn, results: list[tuple[str, bool, datetime]]) -> list[str]:
        """Update the endpoints' circuits after attempts, in order; returns the state of
        each attempt's endpoint after it."""
        settings = self._settings
        names = {name for name, _, _ in results}
        stored = {
            row.endpoint: row
            for row in conn.execute(select(endpoints).where(endpoints.c.endpoint.in_(names)))
        }
        circuits: dict[str, dict[str, Any]] = {
            name: {
                "state": row.state,
                "consecutive_failures": row.consecutive_failures,
                "open_until": row.open_until,
                "updated_at": row.updated_at,
            }
            for name, row in stored.items()
        }
        states = []
        for name, ok, now in results:
            circuit = circuits.get(name)
            if ok:
                state, failures, until = "closed", 0, None
            else:
                failures = (circuit["consecutive_failures"] if circuit else 0) + 1
                probing = circuit is not None and circuit["state"] == "half_open"
                if probing or failures >= settings.circuit_failure_threshold:
                    state = "open"
                    until = now + timedelta(milliseconds=settings.circuit_cooldown_ms)
                    if not probing and (circuit is None or circuit["state"] == "closed"):
                        log.warning("circuit opened for %s after %d failures", name, failures)
                else:
                    state, until = "closed", None
            circuits[name] = {
                "state": state,
                "consecutive_failures": failures,
                "open_until": until,
                "updated_at": now,
            }
            states.append(state)
        for name in names:
            values = circuits[name]
            if name not in stored:
                conn.execute(insert(endpoints), {"endpoint": name, **values})
                continue
            row = stored[name]
            unchanged = (row.state, row.consecutive_failures, row.open_until) == (
                values["state"],
                values["consecutive_failures"],
                values["open_until"],
            )
            if not unchanged:  # a closed circuit staying closed is the common case
                conn.execute(update(endpoints).where(endpoints.c.endpoint == name).values(values))
        return states
