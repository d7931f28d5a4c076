"""Publishing other services' events into the real broker, as those services would."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from kafka import KafkaProducer

from hub.contracts.envelope import envelope_for, to_kafka
from hub.contracts.topics import service_topic


@pytest.fixture
def publish(kafka_bootstrap):
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)

    def send(event, event_id=None, time=None):
        record = to_kafka(
            envelope_for(
                event,
                event_id=event_id or str(uuid4()),
                source_service=event.producer,
                time=time or datetime.now(UTC),
                sequence=None,
            )
        )
        producer.send(
            service_topic(event.producer),
            key=record.key,
            value=record.value,
            headers=record.headers,
        ).get(10)

    yield send
    producer.close()
