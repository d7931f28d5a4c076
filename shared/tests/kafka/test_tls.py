"""TLS to the broker, on the wire: the hub's own clients through stunnel in front of Tansu.

The broker advertises only the proxy's port, so every connection these clients
make (bootstrap and partition leaders alike) goes through TLS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError
from sqlalchemy import Column, MetaData, String, Table, insert, select

from hub.broker import EmbeddedBroker, free_port
from hub.consumer import ProjectionConsumer
from hub.contracts.intake import ReferralReceived
from hub.kafka import check_broker, ensure_topics, new_producer, new_reader
from hub.outbox import OutboxRelay
from hub.projections import Projection
from hub.store import EventStore, PendingEvent
from hub.testing import BACKEND, settings_for
from hub.testing_tls import CertificateAuthority, Credentials, TlsProxy

from ..events import referral_received

pytestmark = pytest.mark.skipif(
    BACKEND == "testcontainers", reason="TLS is proven with stunnel in front of the embedded broker"
)

received = MetaData()
received_referrals = Table(
    "tls_received_referrals",
    received,
    Column("event_id", String(36), primary_key=True),
    Column("referral_id", String(36), nullable=False),
)


class Certificates:
    def __init__(self, folder: Path) -> None:
        self.hub = CertificateAuthority(folder, "hub")
        self.rogue = CertificateAuthority(folder / "rogue", "rogue")
        self.broker = self.hub.issue("broker", server=True)
        self.client = self.hub.issue("earlyhelp-intake", server=False)
        self.intruder = self.rogue.issue("intruder", server=False)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certificates"))


def _broker_behind_tls(
    folder: Path, server: Credentials, client_cafile: Path | None = None
) -> Iterator[str]:
    inner, outer = free_port(), free_port()
    broker = EmbeddedBroker(inner, advertised_port=outer, log_path=folder / "broker.log")
    proxy = TlsProxy(folder, outer, inner, server, client_cafile=client_cafile)
    broker.start()
    try:
        proxy.start()
        try:
            yield f"127.0.0.1:{outer}"
        finally:
            proxy.stop()
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def tls_bootstrap(tmp_path_factory, certificates) -> Iterator[str]:
    yield from _broker_behind_tls(tmp_path_factory.mktemp("tls"), certificates.broker)


@pytest.fixture(scope="module")
def mutual_tls_bootstrap(tmp_path_factory, certificates) -> Iterator[str]:
    yield from _broker_behind_tls(
        tmp_path_factory.mktemp("mtls"), certificates.broker, certificates.hub.cafile
    )


def _settings(service: str, bootstrap: str, tmp_path: Path, **security):
    return settings_for(service, "", bootstrap, tmp_path, kafka_request_timeout_ms=3000, **security)


def _refused(settings) -> bool:
    try:
        check_broker(settings)
    except KafkaError:
        return True
    return False


def _wait_for(condition, timeout_s: float = 90) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_relay_publishes_and_a_consumer_consumes_through_tls(
    db, tls_bootstrap, certificates, tmp_path
):
    tls = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": certificates.hub.cafile}
    topic = f"earlyhelp.tls-{uuid4().hex[:8]}.v1"
    relay = OutboxRelay(db, _settings("intake", tls_bootstrap, tmp_path, **tls))
    received.create_all(db.engine)
    projection = Projection("tls_received", [received_referrals])

    @projection.on(ReferralReceived)
    def _record(conn, event, meta):
        conn.execute(
            insert(received_referrals).values(
                event_id=meta.event_id, referral_id=str(event.referral_id)
            )
        )

    published = []
    store = EventStore(topic)
    for _ in range(3):
        event = PendingEvent(referral_received(uuid4()))
        with db.write() as conn:
            store.append(conn, f"referral-{event.event_id}", 0, [event])
        published.append(str(event.event_id))

    consumer = ProjectionConsumer(
        _settings(f"allocation-{uuid4().hex[:6]}", tls_bootstrap, tmp_path, **tls),
        db,
        [projection],
        [topic],
    )
    stop = threading.Event()
    threads = [
        threading.Thread(target=worker.run, args=(stop,), daemon=True)
        for worker in (relay, consumer)
    ]
    for thread in threads:
        thread.start()

    def consumed() -> list[str]:
        with db.read() as conn:
            return sorted(conn.execute(select(received_referrals.c.event_id)).scalars())

    try:
        assert _wait_for(lambda: len(consumed()) == 3), consumed()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        relay.close()
    assert consumed() == sorted(published)


def test_a_client_that_does_not_trust_the_brokers_ca_is_refused(
    tls_bootstrap, certificates, tmp_path
):
    trusting = _settings(
        "intake",
        tls_bootstrap,
        tmp_path,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certificates.hub.cafile,
    )
    assert not _refused(trusting)  # the set-up works: the refusals below are about trust
    other_ca = trusting.model_copy(update={"kafka_ssl_cafile": certificates.rogue.cafile})
    system_trust = trusting.model_copy(update={"kafka_ssl_cafile": None})
    plaintext = _settings("intake", tls_bootstrap, tmp_path)
    assert _refused(other_ca)
    assert _refused(system_trust)
    assert _refused(plaintext)


def test_mutual_tls_refuses_a_client_without_a_certificate_and_admits_one_with_it(
    mutual_tls_bootstrap, certificates, tmp_path
):
    server_only = {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": certificates.hub.cafile}
    anonymous = _settings("intake", mutual_tls_bootstrap, tmp_path, **server_only)
    intruder = _settings(
        "intake",
        mutual_tls_bootstrap,
        tmp_path,
        **server_only,
        kafka_ssl_certfile=certificates.intruder.certfile,
        kafka_ssl_keyfile=certificates.intruder.keyfile,
    )
    member = _settings(
        "intake",
        mutual_tls_bootstrap,
        tmp_path,
        **server_only,
        kafka_ssl_certfile=certificates.client.certfile,
        kafka_ssl_keyfile=certificates.client.keyfile,
    )
    assert _refused(anonymous)
    assert _refused(intruder)
    assert not _refused(member)

    topic = f"earlyhelp.tls-{uuid4().hex[:8]}.v1"
    ensure_topics(member, [topic])
    producer = new_producer(member, "relay")
    try:
        producer.send(topic, key=b"family", value=b'{"through":"mutual tls"}').get(10)
    finally:
        producer.close(timeout=5)
    reader = new_reader(member)
    try:
        partitions = [TopicPartition(topic, n) for n in range(member.kafka_topic_partitions)]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        values = []
        assert _wait_for(
            lambda: (
                values.extend(
                    r.value for records in reader.poll(timeout_ms=200).values() for r in records
                )
                or values
            ),
            timeout_s=20,
        )
    finally:
        reader.close()
    assert values == [b'{"through":"mutual tls"}']
