"""What the end-to-end tests share: posting referrals, reading every service's view of
them, reading topics back, and waiting until the hub has settled.

Every check reads what a service really holds (its own database, its HTTP API,
its /metrics) or what the broker really carries; nothing is inferred from logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from uuid import uuid4

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from hub.cli import load_definition
from hub.contracts.intake import ReferralReceived
from hub.contracts.topics import dlq_topic, service_topic
from tests.harness import STAFF, Hub, count_by, count_rows, query, read_table, wait_for
from tests.referral_data import DistinctReferrals

INTAKE_TOPIC = service_topic("intake")
INTAKE_DLQ = dlq_topic(INTAKE_TOPIC)
# Every service that follows intake, and the projection that records a referral there.
CONSUMER_PROJECTIONS = {
    "allocation": "incoming_referrals",
    "caseplan": "chronology",
    "notifications": "referral_feedback",
}
CONSUMERS = tuple(CONSUMER_PROJECTIONS)
# Every projection of each consumer that applies a ReferralReceived: allocation's queue
# too, which completes a case whose triage arrived first.
RECEIVED_BY = {
    service: tuple(
        p.name
        for p in load_definition(service).projections
        if p.handles(ReferralReceived.event_type)
    )
    for service in CONSUMERS
}
WAIT_S = 90.0  # a bound, not a pace: generous for a loaded machine

# --- referrals ----------------------------------------------------------------------


# A random start keeps hubs of earlier runs (a reused database) from matching these.
_REFERRALS = DistinctReferrals(
    seed=uuid4().int, first_nhs_base=900_000_000 + uuid4().int % 90_000_000
)


def referral_body(**changes: Any) -> dict[str, Any]:
    """A valid referral in the documented example's shape about children no other names,
    so that each one starts a family of its own (intake matches children it knows)."""
    body = _REFERRALS.next_body("E2E")
    body.update(changes)
    return body


@dataclass(frozen=True)
class Accepted:
    referral_id: str
    location: str
    hub: Hub

    @cached_property
    def family_id(self) -> str:
        """The family the front door sees the referral in: the partner's 202 does not name
        it (issue 14). Looked up once (each test's referrals are families of their own)."""
        response = httpx.get(
            self.hub.url("intake") + self.location, headers=self.hub.auth(STAFF), timeout=15
        )
        response.raise_for_status()
        return response.json()["family_id"]


def accepted(response: httpx.Response, hub: Hub) -> Accepted:
    if response.status_code != 202:
        logs = hub.logs_tail(["intake"])
        raise AssertionError(f"expected 202, got {response.status_code}: {response.text}\n{logs}")
    body = response.json()
    assert "family_id" not in body, "a partner's 202 names no family"
    return Accepted(body["referral_id"], response.headers["location"], hub)


def post_referral(
    client: httpx.Client, hub: Hub, body: dict | None = None, key: str | None = None
) -> httpx.Response:
    headers = hub.auth() | ({"Idempotency-Key": key} if key else {})
    return client.post(
        hub.url("intake") + "/v1/referrals", json=body or referral_body(), headers=headers
    )


def submit(client: httpx.Client, hub: Hub, count: int) -> list[Accepted]:
    return [accepted(post_referral(client, hub), hub) for _ in range(count)]


class Poster(threading.Thread):
    """Posts referrals one after another in the background, as partners would, until
    `count` are accepted or `finish()` is called."""

    def __init__(self, hub: Hub, count: int | None = None, pause_s: float = 0.05) -> None:
        super().__init__(name="referral-poster", daemon=True)
        self.hub, self.count, self.pause_s = hub, count, pause_s
        self.accepted: list[Accepted] = []
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._halt.is_set() and (
                self.count is None or len(self.accepted) + len(self.failures) < self.count
            ):
                try:
                    response = post_referral(client, self.hub)
                    if response.status_code == 202:
                        self.accepted.append(accepted(response, self.hub))
                    else:
                        self.failures.append(f"{response.status_code}: {response.text[:300]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self._halt.wait(self.pause_s)

    def wait_accepted(self, count: int, timeout_s: float = WAIT_S) -> None:
        wait_for(
            lambda: len(self.accepted) >= count or self.failures,
            timeout_s,
            f"fewer than {count} referrals accepted",
        )
        assert not self.failures, self.failures

    def finish(self, timeout_s: float = 60) -> list[Accepted]:
        """Stop posting (once `count` are posted, if given); every referral was accepted."""
        if self.count is None:
            self._halt.set()
        self.join(timeout_s)
        assert not self.is_alive(), "the poster did not finish"
        assert not self.failures, f"referrals refused: {self.failures}\n" + self.hub.logs_tail(
            ["intake"]
        )
        assert self.count is None or len(self.accepted) == self.count
        return self.accepted


# --- every service's view -----------------------------------------------------------


def intake_event_ids(hub: Hub, referrals: Iterable[Accepted]) -> dict[str, list[str]]:
    """{referral_id: ids of the events intake stored in that referral's stream}."""
    rows = query(hub.database_url("intake"), "SELECT stream_id, event_id FROM event_store")
    by_stream: dict[str, list[str]] = {}
    for row in rows:
        by_stream.setdefault(row["stream_id"], []).append(row["event_id"])
    return {r.referral_id: by_stream.get(f"referral-{r.referral_id}", []) for r in referrals}


def projected_ids(hub: Hub, service: str) -> dict[str, int]:
    """{referral_id: rows} in the service's referral projection."""
    if service == "allocation":
        return count_by(hub.database_url(service), "incoming_referrals", "referral_id")
    if service == "notifications":
        return count_by(hub.database_url(service), "referral_feedback", "referral_id")
    if service == "caseplan":
        return count_by(hub.database_url(service), "chronology_entries", "subject")
    if service == "intake":
        return count_by(hub.database_url(service), "referrals", "referral_id")
    raise ValueError(service)


def totals(hub: Hub) -> dict[str, int]:
    """Row counts of everything a referral can leave behind, in every service."""
    tables = {
        "intake": ("event_store", "outbox", "referrals", "idempotency_keys", "inbox"),
        "allocation": ("incoming_referrals", "inbox"),
        "caseplan": ("chronology_entries", "inbox"),
        "notifications": ("referral_feedback", "inbox"),
    }
    return {
        f"{service}.{table}": count_rows(hub.database_url(service), table)
        for service, names in tables.items()
        if service in hub.services
        for table in names
    }


# What one accepted referral leaves behind, table by table (see `totals`).
ONE_REFERRAL = {
    "intake.event_store": 1,
    "intake.referrals": 1,
    "intake.inbox": 2,  # its two projections of its own events: status and matching records
    "allocation.incoming_referrals": 1,
    "allocation.inbox": 2,  # the referrals it expects, and its queue (see RECEIVED_BY)
    "caseplan.chronology_entries": 1,
    "caseplan.inbox": 1,
    "notifications.referral_feedback": 1,
    "notifications.inbox": 1,
}


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The tables whose row counts changed, and by how much."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def chronology(client: httpx.Client, hub: Hub, family_id: str) -> list[dict[str, Any]]:
    """Every entry of a family's chronology, over caseplan's HTTP API ([] when it has none)."""
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 200}
    while True:
        response = client.get(
            f"{hub.url('caseplan')}/v1/families/{family_id}/chronology",
            params=params,
            headers=hub.auth(STAFF),
        )
        if response.status_code == 404 and not entries:
            return []
        assert response.status_code == 200, response.text
        page = response.json()
        entries += page["entries"]
        if not page["next_cursor"]:
            return entries
        params["cursor"] = page["next_cursor"]


def wait_projected(
    hub: Hub, service: str, referrals: Sequence[Accepted], timeout_s: float = WAIT_S
) -> None:
    wanted = {r.referral_id for r in referrals}

    def missing() -> set[str]:
        return wanted - set(projected_ids(hub, service))

    wait_for(
        lambda: not missing(),
        timeout_s,
        lambda: (
            f"{len(missing())} of {len(wanted)} referrals never reached {service}\n"
            + hub.logs_tail(["intake", service])
        ),
    )


def wait_everywhere(hub: Hub, referrals: Sequence[Accepted], timeout_s: float = WAIT_S) -> None:
    """Until every referral is in every consumer's projection."""
    for service in CONSUMERS:
        wait_projected(hub, service, referrals, timeout_s)


def assert_exactly_once(client: httpx.Client, hub: Hub, referrals: Sequence[Accepted]) -> None:
    """Each referral once in intake's store and in every projection, and nothing dead-lettered.

    The projections' primary keys would turn a second delivery that slipped past
    the inbox into an error rather than a second row, so the dead-letter topic is
    checked too: a duplicate that failed would be parked there.
    """
    events = intake_event_ids(hub, referrals)
    assert all(len(ids) == 1 for ids in events.values()), f"intake streams: {events}"
    event_ids = {ids[0] for ids in events.values()}
    for service in ("intake", *CONSUMERS):
        rows = projected_ids(hub, service)
        wrong = {r.referral_id: rows.get(r.referral_id, 0) for r in referrals}
        wrong = {k: v for k, v in wrong.items() if v != 1}
        assert not wrong, f"{service}: rows per referral should be 1, got {wrong}"
    for service, projections in RECEIVED_BY.items():
        handled = sorted(
            (row["projection"], row["event_id"])
            for row in read_table(hub.database_url(service), "inbox")
            if row["event_id"] in event_ids
        )
        expected = sorted((p, e) for p in projections for e in event_ids)
        assert handled == expected, f"{service} inbox"
    for referral in referrals:
        entries = chronology(client, hub, referral.family_id)
        assert [e["event_id"] for e in entries] == events[referral.referral_id], (
            f"chronology of family {referral.family_id}: {entries}"
        )
    parked = [r for r in read_topic(hub.bootstrap_servers, INTAKE_DLQ) if ce_id(r) in event_ids]
    assert not parked, f"dead-lettered: {[dict(r.headers) for r in parked]}"


# --- the broker, read independently of the hub --------------------------------------


def ce_id(record: ConsumerRecord) -> str | None:
    value = dict(record.headers or []).get("ce_id")
    return value.decode() if value is not None else None


def read_topic(bootstrap: str, topic: str, timeout_s: float = 15) -> list[ConsumerRecord]:
    """Every record of `topic`, each partition read from its start to its high watermark."""
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        request_timeout_ms=5000,
    )
    try:
        deadline = time.monotonic() + timeout_s
        numbers = reader.partitions_for_topic(topic)
        while numbers is None and time.monotonic() < deadline:
            reader.topics()  # refreshes the metadata
            time.sleep(0.1)
            numbers = reader.partitions_for_topic(topic)
        partitions = [TopicPartition(topic, n) for n in sorted(numbers or ())]
        if not partitions:
            return []
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        records: list[ConsumerRecord] = []
        remaining = set(partitions)
        while remaining:
            for batch in reader.poll(timeout_ms=100).values():
                records.extend(batch)
            for partition in list(remaining):
                # end_offsets is unreliable on Tansu; a fetch's high watermark is not.
                highwater = reader.highwater(partition)
                if highwater is not None and reader.position(partition) >= highwater:
                    remaining.discard(partition)
            if remaining and time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end: {remaining}")
        return records
    finally:
        reader.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """{partition: offset after its last record}, for partitions that hold records."""
    ends: dict[int, int] = {}
    for record in read_topic(bootstrap, topic):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


def wait_settled(
    hub: Hub, services: Sequence[str] | None = None, timeout_s: float = WAIT_S
) -> None:
    """Until intake's outbox is empty and each consumer group has committed every record.

    After this, every copy of every event on the topic (republished ones too) has
    been handled: counting rows then proves "exactly once", not "not yet twice".
    """
    intake_db = hub.database_url("intake")
    wait_for(
        lambda: count_rows(intake_db, "outbox") == 0,
        timeout_s,
        lambda: "intake's outbox never emptied\n" + hub.logs_tail(["intake"]),
    )
    ends = end_offsets(hub.bootstrap_servers, INTAKE_TOPIC)
    for service in services or [s for s in CONSUMERS if s in hub.services]:
        group = f"earlyhelp-{service}"

        def behind(group: str = group) -> dict[int, tuple[int, int]]:
            done = committed_offsets(hub.bootstrap_servers, group, INTAKE_TOPIC)
            return {p: (done.get(p, 0), end) for p, end in ends.items() if done.get(p, 0) < end}

        wait_for(
            lambda behind=behind: not behind(),
            timeout_s,
            lambda behind=behind, service=service: (
                f"{service} never committed every record of {INTAKE_TOPIC} "
                f"(partition: (committed, end)) {behind()}\n" + hub.logs_tail([service])
            ),
        )


# --- /metrics -----------------------------------------------------------------------


def metric(hub: Hub, service: str, sample: str, **labels: str) -> float:
    """Sum of the service's Prometheus samples named `sample` whose labels match."""
    text = httpx.get(hub.url(service) + "/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def consumed(hub: Hub, service: str, outcome: str) -> float:
    return metric(
        hub, service, "earlyhelp_consumer_events_total", topic=INTAKE_TOPIC, outcome=outcome
    )
