"""What a running hub is doing: its outboxes, its consumers, its metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hub.cli import load_definition
from tests.harness import Hub, count_rows

REFERRAL_RECEIVED = "earlyhelp.referral.received.v1"


def scrape(hub: Hub, service: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The service's /metrics: {sample name: [(labels, value), ...]}."""
    text = httpx.get(hub.url(service) + "/metrics", timeout=10).text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def outbox_backlog_metric(hub: Hub, service: str = "intake") -> float:
    """earlyhelp_outbox_backlog as the service reports it (refreshed by its relay, ~1 s)."""
    values = scrape(hub, service).get("earlyhelp_outbox_backlog", [])
    return sum(value for labels, value in values if labels.get("service") == service)


@dataclass
class HubState:
    """Outbox rows, stored events and consumed records, read at one moment."""

    outbox: dict[str, int]
    stored: dict[str, int]  # events in each producing service's store, by its topic
    consumed: dict[tuple[str, str], float]  # (consumer, topic) -> records handled
    lag: dict[str, float]  # consumer -> summed lag gauge
    dead_lettered: float
    chronology_referrals: int

    def caught_up(self) -> bool:
        """Every outbox empty and every consumer has handled every stored event it follows."""
        if any(self.outbox.values()) or any(self.lag.values()):
            return False
        return all(
            handled >= self.stored[topic]
            for (_consumer, topic), handled in self.consumed.items()
            if topic in self.stored
        )


def hub_state(hub: Hub) -> HubState:
    definitions = {name: load_definition(name) for name in hub.services}
    outbox: dict[str, int] = {}
    stored: dict[str, int] = {}
    for name, definition in definitions.items():
        if definition.topic is not None:
            outbox[name] = count_rows(hub.database_url(name), "outbox")
            stored[definition.topic] = count_rows(hub.database_url(name), "event_store")
    consumed: dict[tuple[str, str], float] = {}
    lag: dict[str, float] = {}
    dead = 0.0
    for name, definition in definitions.items():
        if not definition.consumes:
            continue
        samples = scrape(hub, name)
        for topic in definition.consumes:
            consumed[(name, topic)] = 0.0
        for labels, value in samples.get("earlyhelp_consumer_events_total", []):
            key = (name, labels.get("topic", ""))
            consumed[key] = consumed.get(key, 0.0) + value
            if labels.get("outcome") == "dead_lettered":
                dead += value
        lag[name] = sum(value for _labels, value in samples.get("earlyhelp_consumer_lag", []))
    chronology = (
        count_rows(hub.database_url("caseplan"), "chronology_entries", event_type=REFERRAL_RECEIVED)
        if "caseplan" in definitions
        else 0
    )
    return HubState(outbox, stored, consumed, lag, dead, chronology)


@dataclass
class Drain:
    outbox_empty_after_s: float | None
    idle_after_s: float | None
    final: HubState


def wait_until_idle(
    hub: Hub,
    *,
    since: float,
    timeout_s: float = 180,
    poll_s: float = 0.1,
    on_poll: Callable[[HubState], None] | None = None,
) -> Drain:
    """Poll until the hub has nothing left to do; times are from `since` (time.monotonic())."""
    deadline = time.monotonic() + timeout_s
    outbox_empty_at: float | None = None
    while True:
        state = hub_state(hub)
        now = time.monotonic()
        if on_poll is not None:
            on_poll(state)
        if outbox_empty_at is None and state.outbox.get("intake", 0) == 0:
            outbox_empty_at = now
        if state.caught_up():
            return Drain(outbox_empty_at - since, now - since, state)
        if now > deadline:
            empty = None if outbox_empty_at is None else outbox_empty_at - since
            return Drain(empty, None, state)
        time.sleep(poll_s)
