"""Notifications' own settings (`EARLYHELP_NOTIFICATIONS_*`): policy, delivery and e-mail.

With nothing set: the policy in `config/sharing-policy.yaml`; webhooks retried
with exponential backoff and full jitter (1 s doubling up to 1 h) for 25 hours
before they are dead-lettered; an endpoint's circuit opens after 5 failures in a
row for 60 s; plain-http webhook URLs only for this machine and only on the
embedded default; e-mail written to `<var_dir>/mailbox/` (a Maildir) when no SMTP host
is set; webhook signing secrets encrypted with a key generated into
`<var_dir>/notifications-secret-keys` on the embedded default (elsewhere
`EARLYHELP_NOTIFICATIONS_SECRET_KEYS` must be set).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.settings import REPO_ROOT
from notifications.outbound import Destinations, parse_networks


class NotificationsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EARLYHELP_NOTIFICATIONS_", extra="ignore")

    policy_file: Path = Field(
        default=REPO_ROOT / "config" / "sharing-policy.yaml",
        description="The information-sharing policy: which partner may receive what.",
    )
    schools_file: Path = Field(
        default=REPO_ROOT / "config" / "schools.yaml",
        description=(
            "The authority's schools: where each school's designated safeguarding lead"
            " receives Operation Encompass notices by e-mail."
        ),
    )
    front_door_email: str | None = Field(
        default=None,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description=(
            "The front door's shared mailbox: alerted of Operation Encompass notices with no"
            " known school, or unacknowledged close to their deadline. Unset: no such e-mail"
            " (the queue and the metric still show them)."
        ),
    )
    intake_public_url: str = Field(
        default="http://127.0.0.1:8001",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Where a school's browser reaches intake: the start of the acknowledgement link in"
            " each Operation Encompass e-mail (the hub's public address in production)."
        ),
    )
    allow_http_webhooks: bool | None = Field(
        default=None,
        description=(
            "Accept http:// webhook URLs. Unset: only for 127.0.0.1/localhost and only on the "
            "embedded default (SQLite); false: never; true: for any host (testing only)."
        ),
    )

    ordering_max_wait_ms: int = Field(
        default=30_000,
        ge=0,
        description=(
            "How long a consumed event waits at most for the family's event it follows, when "
            "that one has not been consumed yet (it may come late from another topic, or have "
            "been dead-lettered); an event whose predecessor is known does not wait."
        ),
    )
    retry_base_ms: int = Field(
        default=1000, ge=1, description="Backoff before the second attempt; doubles each time."
    )
    retry_max_delay_ms: int = Field(
        default=3_600_000, ge=1, description="The longest wait between two attempts."
    )
    retry_for_seconds: float = Field(
        default=25 * 3600,
        gt=0,
        description="How long a delivery is retried after its first attempt before dead-letter.",
    )
    circuit_failure_threshold: int = Field(
        default=5, ge=1, description="Failures in a row that open an endpoint's circuit."
    )
    circuit_cooldown_ms: int = Field(
        default=60_000, ge=1, description="How long an open circuit waits before one probe."
    )
    webhook_allowed_networks: str = Field(
        default="",
        description=(
            "Private networks webhooks may reach, comma-separated CIDRs (e.g. 10.20.0.0/16 for "
            "partners on the council network, 127.0.0.1/32 to try a local receiver). Every "
            "other loopback, private, link-local, unique-local, multicast and metadata address "
            "is refused."
        ),
    )
    webhook_connect_timeout_ms: int = Field(default=2000, ge=1)
    webhook_timeout_ms: int = Field(default=5000, ge=1, description="Whole-response timeout.")
    delivery_lease_ms: int = Field(
        default=60_000,
        ge=1000,
        description="A claimed delivery is someone else's to retry if not settled by then.",
    )
    worker_poll_ms: int = Field(default=200, ge=1, description="How often due work is looked for.")
    worker_batch_size: int = Field(default=100, ge=1)
    worker_concurrency: int = Field(
        default=16, ge=1, description="Deliveries in flight at once, across endpoints."
    )
    endpoint_max_in_flight: int = Field(
        default=8, ge=1, description="Deliveries in flight to one endpoint, so none hogs the pool."
    )
    secret_keys: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Fernet keys that encrypt the webhook signing secrets at rest, comma-separated: "
            "the first encrypts, every one decrypts (key rotation). Empty: a key generated "
            "into <var_dir>/notifications-secret-keys, on the embedded default (SQLite) only."
        ),
    )
    secret_rotation_grace_seconds: float = Field(
        default=24 * 3600,
        ge=0,
        description="After a rotation, messages are also signed with the old secret this long.",
    )

    smtp_host: str = Field(default="", description="Empty: write e-mail to mailbox_dir instead.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = Field(
        default=True,
        description=(
            "Upgrade to TLS (STARTTLS), checking the relay's certificate, before anything is "
            "sent; a relay that does not offer it gets nothing. Off only for a relay on the "
            "same host."
        ),
    )
    smtp_cafile: Path | None = Field(
        default=None,
        description="PEM bundle trusted for the relay's certificate; unset: the system's store.",
    )
    smtp_username: str = Field(default="")
    smtp_password: SecretStr = Field(
        default=SecretStr(""), description="Prefer smtp_password_file (a mounted secret)."
    )
    smtp_password_file: Path | None = Field(
        default=None, description="A file holding the SMTP password, read when mail is sent."
    )
    mail_from: str = Field(default="Early Help Hub <no-reply@earlyhelp.example>")
    mailbox_dir: Path | None = Field(
        default=None,
        description="The Maildir that receives e-mail when no SMTP host is set; "
        "unset: <EARLYHELP_VAR_DIR>/mailbox.",
    )
    review_reminder_days: int = Field(
        default=7, ge=0, le=90, description="Days before a review date its lead professional hears."
    )
    review_check_seconds: float = Field(
        default=300,
        gt=0,
        description="How often reviews falling due, and records past retention, are looked for.",
    )
    retention_days: float = Field(
        default=90,
        gt=0,
        description="How long the journal of events, the deliveries' bodies and their attempt "
        "logs are kept; the delivery worker then purges them (the disclosure record stays).",
    )

    @field_validator("smtp_cafile", "smtp_password_file", "front_door_email", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> NotificationsSettings:
        # A lease that can run out while its attempt is still waiting on the partner lets
        # another worker claim the delivery and send it a second time.
        if self.delivery_lease_ms < 2 * self.webhook_timeout_ms:
            raise ValueError(
                f"EARLYHELP_NOTIFICATIONS_DELIVERY_LEASE_MS ({self.delivery_lease_ms}) must be "
                f"at least twice EARLYHELP_NOTIFICATIONS_WEBHOOK_TIMEOUT_MS "
                f"({self.webhook_timeout_ms}), so no delivery is claimed again mid-attempt"
            )
        return self

    @model_validator(mode="after")
    def _smtp_login_only_over_tls(self) -> NotificationsSettings:
        if self.smtp_password_file is not None and not self.smtp_password_file.is_file():
            raise ValueError(
                f"EARLYHELP_NOTIFICATIONS_SMTP_PASSWORD_FILE {self.smtp_password_file} "
                "is not a readable file"
            )
        # An empty password file (compose mounts one always) means no login.
        has_password = bool(self.smtp_password.get_secret_value()) or bool(
            self.smtp_password_file and self.smtp_login_password()
        )
        if self.smtp_password.get_secret_value() and self.smtp_password_file:
            raise ValueError("set EARLYHELP_NOTIFICATIONS_SMTP_PASSWORD or its _FILE, not both")
        if has_password and not self.smtp_username:
            raise ValueError("an SMTP password needs EARLYHELP_NOTIFICATIONS_SMTP_USERNAME")
        if self.smtp_username and not self.smtp_starttls:
            raise ValueError(
                "an SMTP login without STARTTLS would send the password unencrypted: "
                "set EARLYHELP_NOTIFICATIONS_SMTP_STARTTLS=true"
            )
        return self

    def smtp_login_password(self) -> str:
        if self.smtp_password_file is not None:
            return self.smtp_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        return self.smtp_password.get_secret_value()

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # a value that is not CIDRs stops the service at start
        return value

    def webhook_destinations(self) -> Destinations:
        return Destinations(parse_networks(self.webhook_allowed_networks))


@lru_cache(maxsize=1)
def notifications_settings() -> NotificationsSettings:
    """The settings from the environment, read once."""
    return NotificationsSettings()
