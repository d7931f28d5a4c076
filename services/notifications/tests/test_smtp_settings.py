"""SMTP settings: a login only over STARTTLS, the password from a secret file, never shown."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from notifications.settings import NotificationsSettings


def test_starttls_is_the_default() -> None:
    settings = NotificationsSettings()
    assert settings.smtp_starttls is True
    assert settings.smtp_port == 587


def test_a_login_without_starttls_is_refused() -> None:
    with pytest.raises(ValidationError, match="would send the password unencrypted"):
        NotificationsSettings(
            smtp_host="relay.example", smtp_username="hub", smtp_password="s", smtp_starttls=False
        )


def test_the_password_comes_from_a_file_and_is_never_in_a_repr(tmp_path: Path) -> None:
    secret = tmp_path / "smtp-password"
    secret.write_text("relay-password\n")
    settings = NotificationsSettings(
        smtp_host="relay.example", smtp_username="hub", smtp_password_file=secret
    )
    assert settings.smtp_login_password() == "relay-password"
    secret.write_text("rotated\n")
    assert settings.smtp_login_password() == "rotated"  # read when mail is sent
    inline = NotificationsSettings(smtp_username="hub", smtp_password="relay-password")
    assert "relay-password" not in repr(inline)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"smtp_password": "s"}, "needs EARLYHELP_NOTIFICATIONS_SMTP_USERNAME"),
        (
            {"smtp_username": "hub", "smtp_password": "s", "smtp_password_file": __file__},
            "not both",
        ),
        ({"smtp_password_file": "/nonexistent/smtp"}, "is not a readable file"),
    ],
)
def test_inconsistent_credentials_are_refused(values: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        NotificationsSettings(**values)


def test_an_empty_password_file_means_no_login(tmp_path: Path) -> None:
    empty = tmp_path / "smtp-password"
    empty.write_text("")
    settings = NotificationsSettings(smtp_host="relay.example", smtp_password_file=empty)
    assert settings.smtp_login_password() == ""
    assert NotificationsSettings(smtp_password_file="").smtp_password_file is None
