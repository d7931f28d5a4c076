"""Pytest fixtures for the hub: a real broker and real databases, never mocks.

By default the embedded broker (Tansu) and SQLite, plus PostgreSQL on
127.0.0.1:5432 when it answers. With HUB_TEST_BACKEND=testcontainers, Apache
Kafka and PostgreSQL run in containers instead (skipped, with the reason, where
no Docker engine is reachable).
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.broker import EmbeddedBroker, free_port
from hub.settings import HubSettings
from hub.tokens import SigningKeys, new_signing_key

POSTGRES_URL = os.environ.get(
    "HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKEND = os.environ.get("HUB_TEST_BACKEND", "embedded")


def _postgres_reason() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        engine = sa.create_engine(
            POSTGRES_URL, connect_args={"connect_timeout": 2}, hide_parameters=True
        )
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"


_POSTGRES_UNAVAILABLE = _postgres_reason() if BACKEND == "embedded" else None


def _container_engine_reason() -> str | None:
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception as exc:
        return f"HUB_TEST_BACKEND=testcontainers but no Docker engine is reachable: {exc}"


@pytest.fixture(scope="session")
def _containers() -> Iterator[dict[str, str]]:
    reason = _container_engine_reason()
    if reason:
        pytest.skip(reason)
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    with (
        KafkaContainer("apache/kafka:3.8.0").with_kraft() as kafka,
        PostgresContainer("postgres:16", driver="psycopg") as postgres,
    ):
        yield {
            "kafka": kafka.get_bootstrap_server(),
            "postgres": postgres.get_connection_url(),
        }


@contextmanager
def running_broker(log_dir: Path) -> Iterator[EmbeddedBroker]:
    """An embedded broker on a free port, logging to `log_dir`, stopped afterwards."""
    broker = EmbeddedBroker(free_port(), log_path=log_dir / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def kafka_bootstrap(request, tmp_path_factory) -> Iterator[str]:
    """Bootstrap servers of a broker shared by one test module.

    One per module, not per session: a module whose test leaves a consumer group
    stuck mid-join (Tansu cannot recover such a group) must not starve the modules
    that pytest-xdist happens to run after it in the same worker.
    """
    if BACKEND == "testcontainers":
        yield request.getfixturevalue("_containers")["kafka"]
        return
    with running_broker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def own_broker(tmp_path) -> Iterator[EmbeddedBroker]:
    """A broker for one test alone, which the test may stop, kill and start again."""
    if BACKEND == "testcontainers":
        pytest.skip("stopping and restarting the broker is exercised on the embedded broker")
    with running_broker(tmp_path) as broker:
        yield broker


def new_postgres_database(admin_url: str = POSTGRES_URL) -> str:
    """Create an empty database for one test; returns its URL."""
    name = f"eh_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", hide_parameters=True)
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str, admin_url: str = POSTGRES_URL) -> None:
    name = sa.engine.make_url(url).database
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", hide_parameters=True)
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    yield from _postgres_database(request)


@pytest.fixture
def postgres_database_url(request) -> Iterator[str]:
    """An empty PostgreSQL database, for what only PostgreSQL does (replicas sharing it)."""
    yield from _postgres_database(request)


def _postgres_database(request) -> Iterator[str]:
    if BACKEND == "testcontainers":
        admin_url = request.getfixturevalue("_containers")["postgres"]
    elif _POSTGRES_UNAVAILABLE:
        pytest.skip(_POSTGRES_UNAVAILABLE)
    else:
        admin_url = POSTGRES_URL
    url = new_postgres_database(admin_url)
    try:
        yield url
    finally:
        drop_postgres_database(url, admin_url)


# The test suite's token issuer keys: generated for each test process, never stored. The
# token issuer under test (intake) is given the private ones, every other service the
# public ones, as a deployment would be.
TEST_SIGNING_KEYS = json.dumps({"keys": [new_signing_key()]})
TEST_PUBLIC_KEYS = json.dumps(SigningKeys.from_json(TEST_SIGNING_KEYS).public_jwks())


def test_issuer(settings: HubSettings):
    """The token issuer with the test keys, as intake under test holds them."""
    from hub.auth import IdentitiesWatch, TokenIssuer

    identities = IdentitiesWatch(settings.identities_file, settings.identities_reload_seconds)
    keys = SigningKeys.from_json(TEST_SIGNING_KEYS)
    return TokenIssuer(keys, identities, settings.token_ttl_seconds)


def bearer(settings: HubSettings, client_id: str, scopes: list[str] | None = None) -> dict:
    """An Authorization header for a client of the identities file, as its token would give:
    signed by the test issuer's private key, which only the token issuer under test holds."""
    issuer = test_issuer(settings)
    client = issuer.identities.current.client(client_id)
    if client is None:
        raise LookupError(f"{client_id} is not in {settings.identities_file}")
    token, _ = issuer.issue(client, scopes)
    return {"Authorization": f"Bearer {token}"}


def token_keys_env(service_name: str) -> dict[str, str]:
    """The token key settings a service under test gets: private keys for the issuer only."""
    from hub.cli import SERVICES, load_definition

    keys = {"token_public_keys": TEST_PUBLIC_KEYS}
    # Library tests run consumers under made-up service names: none of them issues tokens.
    if service_name in SERVICES and load_definition(service_name).issues_tokens:
        keys["token_signing_keys"] = TEST_SIGNING_KEYS
    return keys


def settings_for(
    service_name: str, database_url: str, bootstrap: str, var_dir: Path, **overrides
) -> HubSettings:
    """Settings as a service would read them, fast enough for tests."""
    if BACKEND == "testcontainers":
        # Apache Kafka refuses sessions shorter than group.min.session.timeout.ms (6 s).
        overrides = {
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
        } | overrides
    overrides = token_keys_env(service_name) | overrides
    return HubSettings(
        service_name=service_name,
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        var_dir=var_dir,
        log_json=False,
        consumer_retry_backoff_ms=20,
        **overrides,
    )


@pytest.fixture
def service_client(database_url, kafka_bootstrap, tmp_path):
    """A factory: one service's app, migrated on `database_url`, served in-process.

    `service_client(definition)` starts one; `service_client.stop(client)` stops it
    early (it is stopped at the end of the test otherwise).

    The app's lifespan runs, so its outbox relay and consumers work against the
    real broker, exactly as in a deployed process.
    """
    from fastapi.testclient import TestClient

    from hub.migrations import upgrade
    from hub.service import create_service_app

    running = []

    def stop(client):
        if client in running:
            running.remove(client)
            client.__exit__(None, None, None)

    def start(definition, **overrides):
        upgrade(definition.migrations, database_url)
        settings = settings_for(
            definition.name, database_url, kafka_bootstrap, tmp_path, **overrides
        )
        client = TestClient(create_service_app(definition, settings))
        client.settings = settings  # for bearer(client.settings, ...)
        client.__enter__()
        running.append(client)
        return client

    start.stop = stop
    yield start
    for client in reversed(list(running)):
        stop(client)


@pytest.fixture
def publish(kafka_bootstrap):
    """Publish an event on its producer's topic as that service's relay would:
    `publish(event, event_id=None, time=None, follows=...)`, acknowledged before it returns.

    Like the services, each event names the family's event it follows (`hub.family_order`):
    by default the one this fixture published last for the family; `follows=None` names
    none, `follows=<event id>` that one."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    from hub.contracts.envelope import envelope_for, to_kafka
    from hub.contracts.topics import service_topic
    from hub.envelopes import FOLLOWS

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    heads: dict[str, str] = {}
    last_published = object()

    def send(event, event_id=None, time=None, follows=last_published):
        event_id = event_id or str(uuid.uuid4())
        family = str(event.family_id)
        follows = heads.get(family) if follows is last_published else follows
        envelope = envelope_for(
            event,
            event_id=event_id,
            source_service=event.producer,
            time=time or datetime.now(UTC),
            sequence=None,
        )
        if follows is not None:
            envelope = dataclasses.replace(envelope, extensions={FOLLOWS: follows})
        record = to_kafka(envelope)
        topic = service_topic(event.producer)
        producer.send(topic, key=record.key, value=record.value, headers=record.headers).get(60)
        heads[family] = event_id
        return event_id

    yield send
    producer.close()


class JwksServer:
    """A real HTTP server publishing a JWK Set, as an identity provider does, for tests:
    `publish(jwks)` changes what it serves (a key rotation); `fetches` counts requests."""

    def __init__(self) -> None:
        import http.server
        import threading

        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.fetches += 1
                body = json.dumps(served.jwks).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.jwks: dict = {"keys": []}
        self.fetches = 0
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/keys"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def publish(self, jwks: dict) -> None:
        self.jwks = jwks

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
