"""Settings shared by every service, read from `EARLYHELP_*` environment variables.

With nothing set, a service runs on the embedded defaults: a SQLite file under
`var/` and the embedded broker on 127.0.0.1:9092.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class HubSettings(BaseSettings):
    """Everything an operator can configure; each field maps to `EARLYHELP_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="EARLYHELP_", extra="ignore")

    service_name: str = Field(
        default="", description="Which service this process runs; set by each service."
    )
    var_dir: Path = Field(
        default=REPO_ROOT / "var", description="Where embedded-default state lives."
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means sqlite:///<var_dir>/<service>.db.",
    )
    database_pool_size: int = Field(default=10, ge=1)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092")
    kafka_client_id_prefix: str = Field(default="earlyhelp")
    # Tansu holds every JoinGroup for session_timeout_ms / 2, so the Kafka client
    # default (45 s) means a 23 s first delivery; these values join in about 1 s.
    kafka_session_timeout_ms: int = Field(default=2000, ge=1)
    kafka_heartbeat_interval_ms: int = Field(default=300, ge=1)
    kafka_max_poll_records: int = Field(default=50, ge=1)
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=1)
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=0)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1)
    kafka_topic_partitions: int = Field(default=4, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_linger_ms: int = Field(default=2, ge=0)

    consumer_max_attempts: int = Field(
        default=3, ge=1, description="Attempts at one message before it goes to the DLQ."
    )
    consumer_retry_backoff_ms: int = Field(default=200, ge=0)
    consumer_wait_backoff_max_ms: int = Field(
        default=5_000,
        ge=1,
        description=(
            "Longest pause between attempts at a record while the database or broker is "
            "away (the consumer waits for them without limit)."
        ),
    )
    relay_batch_size: int = Field(default=500, ge=1)
    relay_idle_poll_ms: int = Field(
        default=250, ge=1, description="How often the relay looks for work nobody signalled."
    )
    relay_linger_ms: int = Field(
        default=5, ge=0, description="How long the relay lets new commits gather into a batch."
    )
    relay_retry_backoff_max_ms: int = Field(default=5_000, ge=1)

    startup_database_wait_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long `earlyhelp serve` waits for the database to answer before it refuses "
            "to start."
        ),
    )
    startup_broker_wait_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long `earlyhelp serve` waits for a broker to answer before it refuses to start."
        ),
    )

    identities_file: Path = Field(
        default=REPO_ROOT / "config" / "identities.yaml",
        description="Partner systems and staff: client ids, hashed secrets, scopes and roles.",
    )
    jwt_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Key that signs and verifies bearer tokens, shared by every service; empty means "
            "one generated in var_dir (embedded default only)."
        ),
    )
    token_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    http_access_log: bool = Field(
        default=False,
        description=(
            "One log line per request. Off by default: request counts and latency are in "
            "/metrics and traces, and the line costs a tenth of a request's time."
        ),
    )
    http_max_body_bytes: int = Field(default=1_000_000, ge=1024)
    log_level: str = Field(default="INFO")
    log_json: bool = Field(default=True)

    @model_validator(mode="after")
    def _default_database(self) -> HubSettings:
        if not self.database_url and self.service_name:
            self.database_url = f"sqlite:///{self.var_dir / (self.service_name + '.db')}"
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    @property
    def consumer_group(self) -> str:
        return f"earlyhelp-{self.service_name}"
