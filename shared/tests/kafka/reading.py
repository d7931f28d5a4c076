"""Reading a topic back, as a test's independent witness of what the hub published."""

import time
from uuid import uuid4

from kafka import KafkaConsumer


def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 90) -> list:
    """Every record of `topic` from the start, waiting until `expected` have arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"witness-{uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=300,
        fetch_max_wait_ms=100,
    )
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # A little longer, so that a duplicate beyond `expected` would show.
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records
