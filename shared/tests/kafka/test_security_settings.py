"""EARLYHELP_KAFKA_* security settings: what each client gets, and what is refused at start-up.

SASL cannot be exercised against the embedded broker (Tansu 0.6 does not
authenticate), so these tests prove the arguments each real client object is
built with; tests/operations/test_kafka_tls.py proves TLS on the wire.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.kafka import (
    admin_config,
    group_consumer_config,
    producer_config,
    reader_config,
)
from hub.kafka_security import kafka_security_config
from hub.settings import REPO_ROOT, HubSettings

PASSWORD = "correct-horse-battery-staple"
# Nothing listens there: the clients below are built, never connected.
NOWHERE = "127.0.0.1:1"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Files to name; their content only matters where a handshake happens."""
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("-----BEGIN PLACEHOLDER-----\n")
    return files


def settings(**values) -> HubSettings:
    return HubSettings(kafka_bootstrap_servers=NOWHERE, service_name="intake", **values)


def refusal(**values) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    return str(caught.value)


def test_plaintext_is_the_embedded_default() -> None:
    assert kafka_security_config(HubSettings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_every_client_the_same_credentials_and_tls(
    password_file: Path, pem_files: dict[str, Path]
) -> None:
    configured = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="earlyhelp-intake",
        kafka_sasl_password_file=password_file,
        kafka_ssl_cafile=pem_files["ca"],
    )
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "earlyhelp-intake",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(pem_files["ca"]),
        "ssl_check_hostname": True,
    }
    # What the relay, DLQ and partner-topic producers, the consumers, replays, the topic
    # administration and the readiness probe are built with.
    clients = {
        "producer": producer_config(configured, "relay"),
        "group consumer": group_consumer_config(configured),
        "reader": reader_config(configured),
        "admin": admin_config(configured, "admin", 10_000),
        "probe": admin_config(configured, "probe", 2000),
    }
    for client, config in clients.items():
        assert {key: config.get(key) for key in expected} == expected, client


def test_mutual_tls_gives_the_client_certificate(pem_files: dict[str, Path]) -> None:
    configured = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pem_files["ca"],
        kafka_ssl_certfile=pem_files["cert"],
        kafka_ssl_keyfile=pem_files["key"],
    )
    assert kafka_security_config(configured) == {
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(pem_files["ca"]),
        "ssl_certfile": str(pem_files["cert"]),
        "ssl_keyfile": str(pem_files["key"]),
    }


def test_a_rotated_password_file_is_read_by_the_next_client(password_file: Path) -> None:
    configured = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="earlyhelp-intake",
        kafka_sasl_password_file=password_file,
    )
    password_file.write_text("the-next-password\n")
    assert kafka_security_config(configured)["sasl_plain_password"] == "the-next-password"


def test_the_password_is_never_in_a_repr_or_a_log_line(
    password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for source in ({"kafka_sasl_password": PASSWORD}, {"kafka_sasl_password_file": password_file}):
        configured = settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="earlyhelp-intake",
            **source,
        )
        assert PASSWORD not in repr(configured)
        assert PASSWORD not in str(configured.model_dump())
        assert producer_config(configured, "relay")["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_without_a_mechanism_user_or_password_is_refused(protocol: str) -> None:
    reason = refusal(kafka_security_protocol=protocol)
    assert f"EARLYHELP_KAFKA_SASL_MECHANISM is required with {protocol}" in reason
    assert f"EARLYHELP_KAFKA_SASL_USERNAME is required with {protocol}" in reason
    assert "needs EARLYHELP_KAFKA_SASL_PASSWORD_FILE" in reason


def test_a_password_given_twice_is_refused(password_file: Path) -> None:
    reason = refusal(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="earlyhelp-intake",
        kafka_sasl_password=PASSWORD,
        kafka_sasl_password_file=password_file,
    )
    assert "set EARLYHELP_KAFKA_SASL_PASSWORD or its _FILE, not both" in reason
    assert PASSWORD not in reason


def test_plain_over_an_unencrypted_connection_is_refused() -> None:
    reason = refusal(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="earlyhelp-intake",
        kafka_sasl_password=PASSWORD,
    )
    assert "PLAIN over SASL_PLAINTEXT sends the password unencrypted" in reason
    assert PASSWORD not in reason


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_without_a_sasl_protocol_are_refused(protocol: str) -> None:
    reason = refusal(
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="earlyhelp-intake",
        kafka_sasl_password=PASSWORD,
    )
    for name in ("MECHANISM", "USERNAME", "PASSWORD"):
        assert f"EARLYHELP_KAFKA_SASL_{name} is set but {protocol} does not use SASL" in reason
    assert PASSWORD not in reason


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_a_tls_protocol_are_refused(
    protocol: str, pem_files: dict[str, Path], password_file: Path
) -> None:
    sasl = (
        {
            "kafka_sasl_mechanism": "SCRAM-SHA-256",
            "kafka_sasl_username": "u",
            "kafka_sasl_password_file": password_file,
        }
        if protocol == "SASL_PLAINTEXT"
        else {}
    )
    reason = refusal(kafka_security_protocol=protocol, kafka_ssl_cafile=pem_files["ca"], **sasl)
    assert f"EARLYHELP_KAFKA_SSL_CAFILE is set but {protocol} does not use TLS" in reason


def test_a_certificate_without_its_key_is_refused(pem_files: dict[str, Path]) -> None:
    reason = refusal(kafka_security_protocol="SSL", kafka_ssl_certfile=pem_files["cert"])
    assert "EARLYHELP_KAFKA_SSL_CERTFILE and EARLYHELP_KAFKA_SSL_KEYFILE go together" in reason


def test_files_that_cannot_be_read_are_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    reason = refusal(kafka_security_protocol="SSL", kafka_ssl_cafile=missing)
    assert f"EARLYHELP_KAFKA_SSL_CAFILE {missing} is not a readable file" in reason
    empty = tmp_path / "empty"
    empty.write_text("\n")
    reason = refusal(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="u",
        kafka_sasl_password_file=empty,
    )
    assert "EARLYHELP_KAFKA_SASL_PASSWORD_FILE is empty" in reason


def test_an_unknown_protocol_or_mechanism_is_refused() -> None:
    assert "kafka_security_protocol" in refusal(kafka_security_protocol="TLS")
    assert "kafka_sasl_mechanism" in refusal(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI"
    )


_CLIENTS = {"KafkaProducer", "KafkaConsumer", "KafkaAdminClient"}


def test_every_kafka_client_is_built_in_hub_kafka_with_the_security_settings() -> None:
    """No client of the hub's own code can bypass the security settings.

    Tests build their own raw clients against the embedded broker; the services and
    the hub library build theirs only in hub/kafka.py, each from one of the *_config
    functions that test_sasl_ssl_gives_every_client_the_same_credentials_and_tls checks.
    """
    sources = [
        path
        for folder in (REPO_ROOT / "shared" / "hub", REPO_ROOT / "services")
        for path in folder.rglob("*.py")
        if "tests" not in path.relative_to(REPO_ROOT).parts and path.name != "testing.py"
    ]
    built_in = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in _CLIENTS:
                spreads = [
                    k.value.func.id
                    for k in node.keywords
                    if k.arg is None
                    and isinstance(k.value, ast.Call)
                    and isinstance(k.value.func, ast.Name)
                ]
                where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
                built_in[where] = spreads
    assert built_in, "no Kafka client construction found: the check is looking in the wrong place"
    assert all(where.startswith("shared/hub/kafka.py:") for where in built_in), built_in
    assert all(
        len(spreads) == 1 and spreads[0].endswith("_config") for spreads in built_in.values()
    ), built_in
