"""`earlyhelp serve` refuses inconsistent Kafka security settings before it reaches anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operations.test_startup import refuses, serve_env

pytestmark = pytest.mark.e2e


def test_sasl_without_credentials_stops_the_service_with_the_settings_named(
    tmp_path: Path,
) -> None:
    env = serve_env(tmp_path, EARLYHELP_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    reason = refuses("intake", env, tmp_path)
    assert reason.startswith("invalid HubSettings: "), reason
    assert "EARLYHELP_KAFKA_SASL_MECHANISM is required with SASL_SSL" in reason
    assert "EARLYHELP_KAFKA_SASL_USERNAME is required with SASL_SSL" in reason


def test_a_sasl_password_with_plaintext_is_refused_and_never_shown(tmp_path: Path) -> None:
    env = serve_env(
        tmp_path,
        EARLYHELP_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        EARLYHELP_KAFKA_SASL_USERNAME="earlyhelp-intake",
        EARLYHELP_KAFKA_SASL_PASSWORD="do-not-print-me",
    )
    reason = refuses("intake", env, tmp_path)
    assert "EARLYHELP_KAFKA_SASL_PASSWORD is set but PLAINTEXT does not use SASL" in reason
    assert "do-not-print-me" not in reason
