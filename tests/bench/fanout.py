"""(c) Fan-out: events published once, delivered by webhook to many subscribers.

The broker and the notifications service (`earlyhelp serve notifications`, SQLite,
the defaults of `make run`) run as processes, and so does one webhook receiver
(`tests/webhook_receiver.py`) listening on one port per subscriber, so that each
subscription is an endpoint of its own, as each partner's server would be. A
school holds every subscription (to its referrals' events), each with its own
secret, which the receiver checks on every request.

After a warm-up family has reached every subscriber, the bench publishes the
events on the services' topics as their relays would (CloudEvents binary mode,
keyed by family): families of four events each (the referral, its triage, the
case's allocation and assessment), each stamped with the moment it is published
(its `time`, which the notifications service keeps as the event's time). It
then waits until every subscriber has acknowledged every event.

- deliveries per second = deliveries acknowledged ÷ (last acknowledgement - first
  event's time);
- deliveries per CPU-second = deliveries acknowledged ÷ the notifications process's CPU
  seconds while they were published and delivered, beside the floor: a bare loop in
  the bench process that signs each of the same bodies (Standard Webhooks, the
  service's own `signing`) and POSTs it with httpx to the same receiver, per CPU-second
  of that loop;
- latency of a delivery = when the receiver answered it - the event's time.

Each event names the family's event it follows, as the services' relays publish them
(`hub.family_order`), so fan-out waits only for a predecessor not yet consumed.

Nothing here asserts a figure; lost or duplicated deliveries, an event
delivered out of its family's order, or an unverified signature make the run
invalid.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
from kafka import KafkaProducer

from hub.broker import EmbeddedBroker, free_port
from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import AssessmentCompleted
from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.contracts.topics import service_topic
from hub.envelopes import FOLLOWS
from notifications import signing
from notifications.settings import NotificationsSettings
from tests.bench import profile as profiling
from tests.bench.load import BenchError
from tests.bench.measure import PRODUCTION_ENV, log
from tests.bench.profile import Profile
from tests.bench.system import CpuUsage, cpu_between, sample_cpu
from tests.harness import Hub
from tests.webhook_receiver import RECORD, WebhookReceiver

SCHOOL = "harlesden-primary-school"
EVENT_TYPES = ["earlyhelp.referral.*", "earlyhelp.case.*", "earlyhelp.assessment.*"]
PER_FAMILY = 4
WAIT_S = 600.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class FanOut:
    events: int
    subscribers: int
    rate: float  # events per second asked for; 0: as fast as they can be published
    publish_s: float  # how long publishing took
    latencies_ms: list[float]  # one per acknowledged delivery
    wall_s: float  # first event's time to the last acknowledgement
    refused: int  # requests the receiver did not acknowledge (failed attempts)
    duplicates: int  # deliveries acknowledged more than once
    missing: int  # deliveries never acknowledged
    out_of_order: int  # deliveries acknowledged before an earlier event of their family
    unverified: int  # requests whose signature did not verify
    ordering_max_wait_ms: int
    cpu: CpuUsage | None = None
    # Signed httpx POSTs per CPU-second of a bare loop to the same receiver (the floor).
    floor_posts_per_cpu_s: float = 0.0
    # py-spy's samples of the notifications service while it delivered (first 20 s).
    profile: Profile | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return self.events * self.subscribers

    @property
    def delivered(self) -> int:
        return len(self.latencies_ms)

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def notifications_cpu_s(self) -> float:
        if self.cpu is None:
            return 0.0
        return self.cpu.cores.get("notifications", 0.0) * self.cpu.wall_s

    @property
    def deliveries_per_cpu_s(self) -> float:
        cpu_s = self.notifications_cpu_s
        return self.delivered / cpu_s if cpu_s > 0 else 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if self.missing:
            found.append(f"{self.missing} of {self.expected} deliveries never acknowledged")
        if self.duplicates:
            found.append(f"{self.duplicates} deliveries acknowledged more than once")
        if self.out_of_order:
            found.append(f"{self.out_of_order} deliveries arrived out of their family's order")
        if self.unverified:
            found.append(f"{self.unverified} requests carried a signature that did not verify")
        return found


def family_events(stamp: str) -> list:
    """One family's referral by the school, its triage, the case's allocation, assessment."""
    example = ReferralReceived.examples()[0]
    family_id, referral_id, case_id = uuid4(), uuid4(), uuid4()
    received = ReferralReceived.model_validate(
        example
        | {
            "referral_id": str(referral_id),
            "family_id": str(family_id),
            "partner_reference": f"BENCH-{stamp}",
            "children": [{**c, "person_id": str(uuid4())} for c in example["children"]],
            "household_members": [
                {**m, "person_id": str(uuid4())} for m in example["household_members"]
            ],
            "referrer": example["referrer"] | {"organisation_id": SCHOOL},
        }
    )
    ids = {"family_id": family_id, "case_id": case_id}
    return [
        received,
        ReferralTriaged.example().model_copy(update={"referral_id": referral_id} | ids),
        CaseAllocated.example().model_copy(update=ids),
        AssessmentCompleted.example().model_copy(update=ids),
    ]


class Publisher:
    """Publishes events on their producers' topics as the relays do, stamped as sent."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
        self.sent: dict[str, tuple[str, int, datetime]] = {}  # id -> (family, place, time)
        self._heads: dict[str, str] = {}  # family -> the last event published of it

    def send(self, events: list, place_offset: int = 0) -> None:
        for place, event in enumerate(events, start=place_offset):
            event_id, now = str(uuid4()), datetime.now(UTC)
            family = str(event.family_id)
            envelope = envelope_for(
                event, event_id=event_id, source_service=event.producer, time=now, sequence=None
            )
            if family in self._heads:
                envelope = replace(envelope, extensions={FOLLOWS: self._heads[family]})
            self._heads[family] = event_id
            record = to_kafka(envelope)
            self._producer.send(
                service_topic(event.producer),
                key=record.key,
                value=record.value,
                headers=record.headers,
            )
            self.sent[event_id] = (family, place, now)

    def flush(self) -> None:
        self._producer.flush(30)

    def close(self) -> None:
        self._producer.close(5)


class Acknowledged:
    """Reads the receiver's record as it grows, keeping what the bench needs of each line."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / RECORD
        self._offset = 0
        self.requests: list[tuple[str, str, bool, bool, float]] = []
        self.accepted = 0

    def poll(self) -> int:
        if not self._path.exists():
            return self.accepted
        with open(self._path, "rb") as record:
            record.seek(self._offset)
            chunk = record.read()
        complete = chunk.rfind(b"\n") + 1
        self._offset += complete
        for line in chunk[:complete].splitlines():
            entry = json.loads(line)
            event_id = (entry.get("event") or {}).get("id", "")
            self.requests.append(
                (
                    entry["endpoint"],
                    event_id,
                    entry["accepted"],
                    entry["verified"],
                    entry["received_at"],
                )
            )
            self.accepted += entry["accepted"]
        return self.accepted


@contextmanager
def _fanout_system(workdir: Path, subscribers: int) -> Iterator[tuple[Hub, WebhookReceiver]]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker(free_port(), log_path=workdir / "broker.log")
    broker.start()
    try:
        hub = Hub(
            workdir,
            broker.bootstrap_servers,
            backend="sqlite",
            services=("notifications",),
            # The receivers are on this machine: the operator's allow-list lets them in.
            extra_env=PRODUCTION_ENV
            | {"EARLYHELP_NOTIFICATIONS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32"},
        )
        hub.start(timeout_s=90)
        try:
            receiver = WebhookReceiver(workdir / "receiver", listeners=subscribers).start()
            try:
                yield hub, receiver
            finally:
                receiver.stop()
        finally:
            hub.stop()
    finally:
        broker.stop()


def _subscribe(hub: Hub, receiver: WebhookReceiver, subscribers: int) -> list[tuple[str, str]]:
    """Subscribe the school once per listener; each subscription's (url, secret)."""
    endpoints = []
    with httpx.Client(timeout=15) as client:
        for number in range(subscribers):
            name = f"subscriber-{number + 1:02d}"
            created = client.post(
                hub.url("notifications") + "/v1/subscriptions",
                json={
                    "event_types": EVENT_TYPES,
                    "delivery": {"type": "webhook", "url": receiver.url(name, listener=number)},
                    "description": f"bench {name}",
                },
                headers=hub.auth(SCHOOL),
            )
            if created.status_code != 201:
                raise BenchError(f"subscribing failed: {created.status_code} {created.text}")
            secret = created.json()["secret"]
            receiver.configure(name, secret=secret)
            endpoints.append((receiver.url(name, listener=number), secret))
    return endpoints


def measure_post_floor(endpoints: list[tuple[str, str]], bodies: list[bytes], posts: int) -> float:
    """Signed httpx POSTs per CPU-second of a bare loop in this process: each of `bodies`
    signed with its endpoint's secret and POSTed, round robin over the endpoints."""
    with httpx.Client(timeout=15) as client:
        cpu_before = time.process_time()
        for number in range(posts):
            url, secret = endpoints[number % len(endpoints)]
            body = bodies[number % len(bodies)]
            headers = signing.headers([secret], f"msg_floor{number}", int(time.time()), body)
            headers["content-type"] = "application/cloudevents+json; charset=utf-8"
            answered = client.post(url, content=body, headers=headers)
            if answered.status_code != 204:
                raise BenchError(f"the receiver refused a floor POST: {answered.status_code}")
        cpu_s = time.process_time() - cpu_before
    return posts / cpu_s if cpu_s > 0 else 0.0


def _delivered_bodies(folder: Path, limit: int) -> list[bytes]:
    """Bodies the service delivered (as the receiver recorded them), for the floor to send."""
    bodies = []
    with open(folder / RECORD, "rb") as record:
        for line in record:
            entry = json.loads(line)
            if entry["accepted"] and entry.get("event"):
                bodies.append(json.dumps(entry["event"], separators=(",", ":")).encode())
                if len(bodies) == limit:
                    break
    return bodies


def _wait(acks: Acknowledged, count: int, timeout_s: float, hub: Hub) -> float | None:
    """Poll until `count` acknowledgements; the monotonic time then, None on timeout."""
    deadline = time.monotonic() + timeout_s
    while acks.poll() < count:
        if time.monotonic() > deadline:
            return None
        if not hub.running("notifications"):
            raise BenchError("notifications exited:\n" + hub.logs_tail(["notifications"]))
        time.sleep(0.2)
    return time.monotonic()


def _process_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def measure_fanout(
    workdir: Path,
    *,
    events: int = 1000,
    subscribers: int = 20,
    rate: float = 0.0,
    profile: bool = False,
) -> FanOut:
    families = max(1, events // PER_FAMILY)
    events = families * PER_FAMILY
    with _fanout_system(workdir, subscribers) as (hub, receiver):
        endpoints = _subscribe(hub, receiver, subscribers)
        publisher = Publisher(hub.bootstrap_servers)
        acks = Acknowledged(receiver.state_dir)
        try:
            log(f"(c) warm-up: one family's {PER_FAMILY} events to {subscribers} subscribers")
            publisher.send(family_events("warm-up"))
            publisher.flush()
            if _wait(acks, PER_FAMILY * subscribers, 120, hub) is None:
                raise BenchError("the warm-up never reached every subscriber")
            warm = set(publisher.sent)
            warm_requests = len(acks.requests)

            log(
                f"(c) {events} events ({families} families) to {subscribers} subscribers, "
                + (f"{rate:g} events/s" if rate else "published at once")
            )
            cpu_before, receiver_before = sample_cpu(), _process_cpu_s(receiver.pid)
            sampling = (
                profiling.start(hub.pid("notifications"), 20, workdir / "profile.txt")
                if profile
                else None
            )
            started = time.monotonic()
            for number in range(families):
                publisher.send(family_events(f"{number:05d}"))
                if rate:
                    pause = started + (number + 1) * PER_FAMILY / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
            publisher.flush()
            publish_s = time.monotonic() - started
            done = _wait(acks, (PER_FAMILY + events) * subscribers, WAIT_S, hub)
            cpu_after, receiver_after = sample_cpu(), _process_cpu_s(receiver.pid)
            if done is None:
                log("    not every delivery arrived in time")
            time.sleep(1.0)  # anything sent twice, or late, shows now
            acks.poll()
            sampled = profiling.finish(sampling, workdir / "profile.txt", "notifications")
        finally:
            publisher.close()
        default_wait = NotificationsSettings.model_fields["ordering_max_wait_ms"].default
        env = hub.env("notifications")
        max_wait = int(env.get("EARLYHELP_NOTIFICATIONS_ORDERING_MAX_WAIT_MS", default_wait))
        floor_posts = min(events * subscribers, 4000)
        log(f"(c) floor: {floor_posts} signed httpx POSTs to the same receiver in a bare loop")
        floor = measure_post_floor(
            endpoints, _delivered_bodies(receiver.state_dir, 500), floor_posts
        )

    cpu = cpu_between(cpu_before, cpu_after, reaped_label=None)
    cpu.cores["webhook receiver"] = (receiver_after - receiver_before) / cpu.wall_s
    measured = {k: v for k, v in publisher.sent.items() if k not in warm}
    result = _summarise(acks.requests[warm_requests:], measured, subscribers, cpu)
    result.rate, result.publish_s, result.ordering_max_wait_ms = rate, publish_s, max_wait
    result.floor_posts_per_cpu_s, result.profile = floor, sampled
    log(
        f"    {result.delivered:,} of {result.expected:,} deliveries, "
        f"{result.deliveries_per_s:,.0f}/s, {result.deliveries_per_cpu_s:,.0f} per CPU-second "
        f"(floor {floor:,.0f}, ratio {result.deliveries_per_cpu_s / floor:.2f}); "
        f"p99 event to delivery {_percentile(result.latencies_ms, 99):,.0f} ms"
    )
    return result


def _percentile(values: list[float], pct: float) -> float:
    from tests.bench.report import percentile

    return percentile(values, pct)


def _summarise(
    requests: list[tuple[str, str, bool, bool, float]],
    sent: dict[str, tuple[str, int, datetime]],
    subscribers: int,
    cpu: CpuUsage,
) -> FanOut:
    latencies: list[float] = []
    acknowledged: set[tuple[str, str]] = set()
    done: dict[tuple[str, str], int] = {}  # (endpoint, family) -> events acknowledged so far
    duplicates = refused = out_of_order = unverified = 0
    first_time = min(t for _f, _p, t in sent.values()).timestamp()
    last = first_time
    for endpoint, event_id, accepted, verified, received_at in requests:
        unverified += not verified
        if event_id not in sent:
            continue
        if not accepted:
            refused += 1
            continue
        key = (endpoint, event_id)
        if key in acknowledged:
            duplicates += 1
            continue
        acknowledged.add(key)
        family, place, stamped = sent[event_id]
        if done.get((endpoint, family), 0) != place:
            out_of_order += 1
        done[(endpoint, family)] = done.get((endpoint, family), 0) + 1
        latencies.append((received_at - stamped.timestamp()) * 1000)
        last = max(last, received_at)
    return FanOut(
        events=len(sent),
        subscribers=subscribers,
        rate=0.0,
        publish_s=0.0,
        latencies_ms=latencies,
        wall_s=last - first_time,
        refused=refused,
        duplicates=duplicates,
        missing=len(sent) * subscribers - len(acknowledged),
        out_of_order=out_of_order,
        unverified=unverified,
        ordering_max_wait_ms=0,
        cpu=cpu,
    )
