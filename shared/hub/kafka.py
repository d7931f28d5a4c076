"""Kafka clients configured the hub's way, and topic administration.

Every topic is created explicitly with the configured partition count before
anything produces to it: brokers that auto-create topics (Tansu does) would
otherwise pick their own partition count and ignore topic configs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from hub.kafka_security import kafka_security_config
from hub.settings import HubSettings

log = logging.getLogger(__name__)


def _connection(settings: HubSettings, bootstrap_timeout_ms: int | None = None) -> dict:
    """How every client reaches the brokers: bounded waits, quick reconnects, and the
    configured TLS and SASL (every client below is built with it)."""
    return {
        **kafka_security_config(settings),
        "bootstrap_servers": settings.bootstrap_servers,
        "bootstrap_timeout_ms": bootstrap_timeout_ms or settings.kafka_request_timeout_ms,
        # The client default backs off up to 30 s, so a broker back after an outage
        # would go unnoticed for that long.
        "reconnect_backoff_max_ms": 1000,
    }


def producer_config(settings: HubSettings, role: str) -> dict:
    """An idempotent producer that waits for every in-sync replica (acks=all)."""
    return {
        **_connection(settings),
        "client_id": f"{settings.kafka_client_id_prefix}-{settings.service_name}-{role}",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.kafka_linger_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "delivery_timeout_ms": settings.kafka_request_timeout_ms + settings.kafka_linger_ms + 1000,
        "max_block_ms": settings.kafka_request_timeout_ms,
        "retry_backoff_ms": 100,
    }


def group_consumer_config(settings: HubSettings) -> dict:
    """A member of the service's consumer group; offsets are committed by the runner only."""
    return {
        **_connection(settings),
        "client_id": f"{settings.kafka_client_id_prefix}-{settings.service_name}-consumer",
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.kafka_session_timeout_ms,
        "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
        "max_poll_records": settings.kafka_max_poll_records,
        "max_poll_interval_ms": settings.kafka_max_poll_interval_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "request_timeout_ms": max(
            settings.kafka_request_timeout_ms, settings.kafka_session_timeout_ms + 5000
        ),
    }


def reader_config(settings: HubSettings) -> dict:
    """A consumer outside any group, for replays that assign partitions themselves."""
    return {
        **_connection(settings),
        "client_id": f"{settings.kafka_client_id_prefix}-{settings.service_name}-reader",
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
    }


def admin_config(settings: HubSettings, role: str, timeout_ms: int) -> dict:
    """Topic administration (role "admin") and the readiness probe (role "probe")."""
    return {
        **_connection(settings, bootstrap_timeout_ms=timeout_ms),
        "client_id": f"{settings.kafka_client_id_prefix}-{settings.service_name or 'hub'}-{role}",
        "request_timeout_ms": timeout_ms,
    }


def new_producer(settings: HubSettings, role: str) -> KafkaProducer:
    return KafkaProducer(**producer_config(settings, role))


def new_group_consumer(settings: HubSettings, topics: Iterable[str]) -> KafkaConsumer:
    return KafkaConsumer(*topics, **group_consumer_config(settings))


def new_reader(settings: HubSettings) -> KafkaConsumer:
    return KafkaConsumer(**reader_config(settings))


def topic_configs(settings: HubSettings) -> dict[str, str]:
    """Configs every hub topic is created with; Tansu ignores them, Apache Kafka enforces them."""
    return {"min.insync.replicas": str(settings.kafka_min_insync_replicas)}


def ensure_topics(settings: HubSettings, topics: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    wanted = sorted(set(topics))
    admin = KafkaAdminClient(**admin_config(settings, "admin", settings.kafka_request_timeout_ms))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=settings.kafka_topic_partitions,
                            replication_factor=settings.kafka_replication_factor,
                            topic_configs=topic_configs(settings),
                        )
                    ]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()


def check_broker(settings: HubSettings) -> None:
    """Readiness: raises when no broker answers a metadata request."""
    admin = KafkaAdminClient(**admin_config(settings, "probe", 2000))
    try:
        admin.list_topics()
    finally:
        admin.close()


def wait_for_broker(settings: HubSettings, timeout_s: float) -> None:
    """Block until the broker answers or `timeout_s` passes (then re-raise the last error)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_broker(settings)
            return
        except KafkaError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
