"""How every Kafka client authenticates and encrypts: checked once at start-up, built in one place.

`check_kafka_security` refuses combinations that would silently do less than the
operator asked (a CA file with PLAINTEXT, a SASL password with SSL, PLAIN over an
unencrypted connection), so a mistake stops the service at start-up instead of
leaving the broker connection open. `kafka_security_config` is the only place the
kafka-python security arguments are built; hub.kafka adds it to every client.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.settings import HubSettings

_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


class KafkaSecurityError(ValueError):
    """The Kafka security settings contradict each other or name files that cannot be read."""


def check_kafka_security(settings: HubSettings) -> None:
    """Raise KafkaSecurityError naming every inconsistent EARLYHELP_KAFKA_* setting."""
    protocol = settings.kafka_security_protocol
    problems: list[str] = []
    sasl_settings = {
        "EARLYHELP_KAFKA_SASL_MECHANISM": bool(settings.kafka_sasl_mechanism),
        "EARLYHELP_KAFKA_SASL_USERNAME": bool(settings.kafka_sasl_username),
        "EARLYHELP_KAFKA_SASL_PASSWORD": bool(settings.kafka_sasl_password.get_secret_value()),
        "EARLYHELP_KAFKA_SASL_PASSWORD_FILE": settings.kafka_sasl_password_file is not None,
    }
    tls_files = {
        "EARLYHELP_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
        "EARLYHELP_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
        "EARLYHELP_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
    }
    if protocol in _SASL:
        for name in ("EARLYHELP_KAFKA_SASL_MECHANISM", "EARLYHELP_KAFKA_SASL_USERNAME"):
            if not sasl_settings[name]:
                problems.append(f"{name} is required with {protocol}")
        given = [
            name
            for name in ("EARLYHELP_KAFKA_SASL_PASSWORD", "EARLYHELP_KAFKA_SASL_PASSWORD_FILE")
            if sasl_settings[name]
        ]
        if not given:
            problems.append(
                f"{protocol} needs EARLYHELP_KAFKA_SASL_PASSWORD_FILE "
                "(or EARLYHELP_KAFKA_SASL_PASSWORD)"
            )
        elif len(given) == 2:
            problems.append("set EARLYHELP_KAFKA_SASL_PASSWORD or its _FILE, not both")
        if protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "PLAIN":
            problems.append(
                "SASL mechanism PLAIN over SASL_PLAINTEXT sends the password unencrypted: "
                "use SASL_SSL, or a SCRAM mechanism"
            )
    else:
        problems += [
            f"{name} is set but {protocol} does not use SASL (use SASL_SSL)"
            for name, given in sasl_settings.items()
            if given
        ]
    if protocol not in _TLS:
        problems += [
            f"{name} is set but {protocol} does not use TLS (use SSL or SASL_SSL)"
            for name, path in tls_files.items()
            if path is not None
        ]
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        problems.append(
            "EARLYHELP_KAFKA_SSL_CERTFILE and EARLYHELP_KAFKA_SSL_KEYFILE go together "
            "(mutual TLS needs both)"
        )
    files = {**tls_files, "EARLYHELP_KAFKA_SASL_PASSWORD_FILE": settings.kafka_sasl_password_file}
    problems += [
        f"{name} {path} is not a readable file"
        for name, path in files.items()
        if path is not None and not _readable(path)
    ]
    password_file = settings.kafka_sasl_password_file
    if password_file is not None and _readable(password_file) and not _read_password(password_file):
        problems.append("EARLYHELP_KAFKA_SASL_PASSWORD_FILE is empty")
    if problems:
        raise KafkaSecurityError("Kafka security settings: " + "; ".join(problems))


def kafka_security_config(settings: HubSettings) -> dict:
    """The kafka-python arguments for the configured protocol (nothing but them).

    The password file is read each time a client is built, so a rotated secret is
    picked up when a client reconnects after the broker refused the old one.
    """
    protocol = settings.kafka_security_protocol
    config: dict = {"security_protocol": protocol}
    if protocol in _TLS:
        config["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_cafile is not None:
            config["ssl_cafile"] = str(settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile is not None:
            config["ssl_certfile"] = str(settings.kafka_ssl_certfile)
            config["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
    if protocol in _SASL:
        if settings.kafka_sasl_password_file is not None:
            password = _read_password(settings.kafka_sasl_password_file)
        else:
            password = settings.kafka_sasl_password.get_secret_value()
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = password
    return config


def _readable(path: Path) -> bool:
    try:
        with path.open("rb"):
            return path.is_file()
    except OSError:
        return False


def _read_password(path: Path) -> str:
    # Secret files usually end with a newline that is not part of the password.
    return path.read_text(encoding="utf-8").rstrip("\r\n")
