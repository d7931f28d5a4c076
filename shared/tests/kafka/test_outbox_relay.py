import threading
import time
from collections import defaultdict
from uuid import uuid4

from hub.contracts.envelope import from_kafka
from hub.outbox import OUTBOX_BACKLOG, OutboxRelay
from hub.store import EventStore, PendingEvent
from hub.testing import settings_for

from ..events import referral_received
from .reading import read_topic


def _append(db, store, families, per_family):
    ids = defaultdict(list)
    for round_ in range(per_family):
        for family in families:
            with db.write() as conn:
                event = PendingEvent(referral_received(family))
                store.append(conn, f"referral-{family}-{round_}", 0, [event])
                ids[str(family)].append(str(event.event_id))
    return ids


def _run(relay):
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    return stop, thread


def _wait_until_empty(relay, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while relay.backlog() and time.monotonic() < deadline:
        time.sleep(0.05)
    return relay.backlog()


def test_relay_publishes_every_event_once_in_order_per_family(db, kafka_bootstrap, tmp_path):
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    settings = settings_for("intake", "", kafka_bootstrap, tmp_path)
    store = EventStore(topic)
    families = [uuid4() for _ in range(5)]
    appended = _append(db, store, families, per_family=4)
    relay = OutboxRelay(db, settings)

    stop, thread = _run(relay)
    try:
        assert _wait_until_empty(relay) == 0
    finally:
        stop.set()
        thread.join()
        relay.close()

    records = read_topic(kafka_bootstrap, topic, expected=20)
    published = defaultdict(list)
    for record in records:
        envelope = from_kafka(record.key, record.value, record.headers)
        assert record.key == envelope.partitionkey.encode()
        assert envelope.source == "/earlyhelp/intake"
        published[envelope.partitionkey].append(envelope.id)
    assert dict(published) == dict(appended)


def test_relay_keeps_events_while_the_broker_is_down_and_sends_them_all_after(
    db, own_broker, tmp_path
):
    topic = f"earlyhelp.test-{uuid4().hex[:8]}.v1"
    settings = settings_for(
        "intake",
        "",
        own_broker.bootstrap_servers,
        tmp_path,
        kafka_request_timeout_ms=1500,
        relay_retry_backoff_max_ms=500,
    )
    store = EventStore(topic)
    own_broker.stop()
    families = [uuid4() for _ in range(3)]
    appended = _append(db, store, families, per_family=3)
    relay = OutboxRelay(db, settings)

    stop, thread = _run(relay)
    try:
        time.sleep(2)  # the relay tries, fails and keeps every event
        assert relay.backlog() == 9
        assert OUTBOX_BACKLOG.labels("intake")._value.get() == 9
        own_broker.start()
        assert _wait_until_empty(relay) == 0
    finally:
        stop.set()
        thread.join()
        relay.close()

    records = read_topic(own_broker.bootstrap_servers, topic, expected=9)
    published = defaultdict(list)
    for record in records:
        envelope = from_kafka(record.key, record.value, record.headers)
        published[envelope.partitionkey].append(envelope.id)
    assert dict(published) == dict(appended)
