"""Attempt limits: a token bucket per key (a remote address, a client id).

In memory, per process: a limit shared across replicas would need a shared
store, and the point here is to keep one process answering under a burst, which
a per-process limit does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class AttemptLimiter:
    """`per_minute` attempts a minute for each key, in bursts of up to that many."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 50_000,
    ) -> None:
        self._capacity = float(per_minute)
        self._refill_per_s = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        # key -> (tokens left, when counted); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str) -> float:
        now = self._clock()
        tokens, counted_at = self._buckets.get(key, (self._capacity, now))
        return min(self._capacity, tokens + (now - counted_at) * self._refill_per_s)

    def wait(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        missing = 1.0 - self._level(key)
        return 0.0 if missing <= 0 else missing / self._refill_per_s

    def spend(self, key: str) -> None:
        """Count one attempt against `key`."""
        self._buckets[key] = (max(self._level(key) - 1.0, 0.0), self._clock())
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            # The key not seen for longest goes: it has refilled the most, if not fully.
            self._buckets.popitem(last=False)

    def refund(self, key: str) -> None:
        """Give back an attempt counted against `key` (one that turned out not to count)."""
        if key in self._buckets:
            self._buckets[key] = (min(self._level(key) + 1.0, self._capacity), self._clock())

    def attempt(self, key: str) -> float:
        """Count an attempt if allowed and return 0; otherwise the seconds to wait."""
        wait_s = self.wait(key)
        if not wait_s:
            self.spend(key)
        return wait_s
