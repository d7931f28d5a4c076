"""Delivery settings that would let one delivery be sent twice are refused at start-up."""

import pytest
from pydantic import ValidationError

from notifications.settings import NotificationsSettings


def test_a_lease_shorter_than_two_attempt_timeouts_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"LEASE_MS \(9999\) must be at least twice"):
        NotificationsSettings(webhook_timeout_ms=5000, delivery_lease_ms=9999)


def test_a_lease_of_two_attempt_timeouts_is_accepted() -> None:
    settings = NotificationsSettings(webhook_timeout_ms=5000, delivery_lease_ms=10_000)
    assert settings.delivery_lease_ms == 10_000
