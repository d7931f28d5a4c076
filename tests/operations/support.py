"""What the operations tests share: partners posting with idempotency keys while
services stop, die and come back, and reading what reached the broker."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import uuid4

import httpx

from tests.e2e.support import (
    CONSUMER_PROJECTIONS,
    INTAKE_DLQ,
    INTAKE_TOPIC,
    Accepted,
    accepted,
    ce_id,
    intake_event_ids,
    projected_ids,
    read_topic,
    referral_body,
)
from tests.harness import Hub, query, read_table, wait_for


@dataclass
class Attempt:
    key: str
    body: dict
    target: str


@dataclass
class Outcomes:
    accepted: list[Accepted] = field(default_factory=list)
    # Connection refused: the request never left the client.
    refused: int = 0
    # Sent (or perhaps sent) but no response came back: a partner would retry these.
    unanswered: list[tuple[Attempt, str]] = field(default_factory=list)
    # A response other than 202.
    failures: list[str] = field(default_factory=list)


class KeyedPoster(threading.Thread):
    """Posts referrals, each with an Idempotency-Key, round-robin to `targets` (intake
    processes), as fast as `pause_s` allows, until `finish()`; sorts every attempt by
    what came back. Keep-alive connections, as a partner's HTTP client would use."""

    def __init__(self, hub: Hub, targets: Sequence[str], pause_s: float = 0.01) -> None:
        super().__init__(name="keyed-poster", daemon=True)
        self.hub, self.targets, self.pause_s = hub, list(targets), pause_s
        self.outcomes = Outcomes()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        headers = self.hub.auth()
        turn = 0
        with httpx.Client(timeout=30) as client:
            while not self._halt.is_set():
                target = self.targets[turn % len(self.targets)]
                turn += 1
                attempt = Attempt(str(uuid4()), referral_body(), target)
                try:
                    response = client.post(
                        self.hub.url(target) + "/v1/referrals",
                        json=attempt.body,
                        headers=headers | {"Idempotency-Key": attempt.key},
                    )
                except httpx.ConnectError:
                    with self._lock:
                        self.outcomes.refused += 1
                except httpx.TransportError as exc:
                    with self._lock:
                        self.outcomes.unanswered.append((attempt, f"{type(exc).__name__}: {exc}"))
                else:
                    with self._lock:
                        if response.status_code == 202:
                            self.outcomes.accepted.append(accepted(response, self.hub))
                        else:
                            self.outcomes.failures.append(
                                f"{target} {response.status_code}: {response.text[:300]}"
                            )
                self._halt.wait(self.pause_s)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes.accepted)

    def wait_accepted(self, more: int, timeout_s: float = 90) -> None:
        target = self.count() + more
        wait_for(lambda: self.count() >= target, timeout_s, f"fewer than {target} accepted")

    def finish(self) -> Outcomes:
        self._halt.set()
        self.join(60)
        assert not self.is_alive(), "the poster did not finish"
        return self.outcomes


def retry_unanswered(
    client: httpx.Client, hub: Hub, outcomes: Sequence[Outcomes], target: str = "intake"
) -> list[Accepted]:
    """Send each unanswered request again, same key and body, as a partner would; each
    must now be accepted (a first time, or replayed)."""
    done = []
    for outcome in outcomes:
        for attempt, _error in outcome.unanswered:
            response = client.post(
                hub.url(target) + "/v1/referrals",
                json=attempt.body,
                headers=hub.auth() | {"Idempotency-Key": attempt.key},
            )
            done.append(accepted(response, hub))
    return done


def stored_keys(hub: Hub) -> set[str]:
    """The Idempotency-Keys intake has answered (and so stored the answer of)."""
    rows = query(hub.database_url("intake"), "SELECT idempotency_key FROM idempotency_keys")
    return {row["idempotency_key"] for row in rows}


def stored_event_ids(hub: Hub) -> list[str]:
    rows = query(hub.database_url("intake"), "SELECT event_id FROM event_store")
    return [row["event_id"] for row in rows]


def copies_on_topic(hub: Hub, topic: str = INTAKE_TOPIC) -> Counter[str]:
    """{event id: how many records of `topic` carry it}."""
    return Counter(ce_id(record) for record in read_topic(hub.bootstrap_servers, topic))


def assert_each_published_once(hub: Hub, event_ids: Sequence[str]) -> None:
    copies = copies_on_topic(hub)
    wrong = {e: copies.get(e, 0) for e in event_ids if copies.get(e, 0) != 1}
    assert not wrong, f"{len(wrong)} events not on {INTAKE_TOPIC} exactly once: {wrong}"
    strangers = set(copies) - set(event_ids)
    assert not strangers, f"records of events intake never stored: {strangers}"


# The services these tests run: notifications is left out (it is being built, and its
# projections change), so each hub is three processes on this two-core machine.
SERVICES = ("intake", "allocation", "caseplan")


def assert_applied_once(hub: Hub, referrals: Sequence[Accepted]) -> None:
    """Each referral once in intake's store and projection, once in each consumer's
    projection and inbox, and nothing dead-lettered (see tests.e2e.support's
    assert_exactly_once, which needs all four services)."""
    events = intake_event_ids(hub, referrals)
    assert all(len(ids) == 1 for ids in events.values()), f"intake streams: {events}"
    event_ids = {ids[0] for ids in events.values()}
    consumers = [s for s in CONSUMER_PROJECTIONS if s in hub.services]
    for service in ("intake", *consumers):
        rows = projected_ids(hub, service)
        wrong = {r.referral_id: rows.get(r.referral_id, 0) for r in referrals}
        wrong = {k: v for k, v in wrong.items() if v != 1}
        assert not wrong, f"{service}: rows per referral should be 1, got {wrong}"
    for service in consumers:
        projection = CONSUMER_PROJECTIONS[service]
        handled = sorted(
            row["event_id"]
            for row in read_table(hub.database_url(service), "inbox", projection=projection)
            if row["event_id"] in event_ids
        )
        assert handled == sorted(event_ids), f"{service} inbox"
    parked = [r for r in read_topic(hub.bootstrap_servers, INTAKE_DLQ) if ce_id(r) in event_ids]
    assert not parked, f"dead-lettered: {[dict(r.headers) for r in parked]}"
