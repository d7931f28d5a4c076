"""Settings shared by every service, read from `EARLYHELP_*` environment variables.

With nothing set, a service runs on the embedded defaults: a SQLite file under
`var/` and the embedded broker on 127.0.0.1:9092.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parents[2]

PostgresSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


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
    # PostgreSQL TLS, handed to libpq; see _database_tls for what may be combined.
    database_sslmode: PostgresSslMode | None = Field(
        default=None,
        description=(
            "libpq sslmode for PostgreSQL; verify-full in production. Unset: the URL's own, "
            "else libpq's default (prefer, which falls back to no TLS)."
        ),
    )
    database_sslrootcert: str | None = Field(
        default=None,
        description="CA certificate file that signed the server's, or `system` for the OS store.",
    )
    database_sslcert: Path | None = Field(
        default=None, description="Client certificate file, where the server asks for one."
    )
    database_sslkey: Path | None = Field(
        default=None, description="The client certificate's private key file (mode 0600)."
    )

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092")
    kafka_client_id_prefix: str = Field(default="earlyhelp")
    # Tansu holds every JoinGroup for session_timeout_ms / 2, so the Kafka client
    # default (45 s) means a 23 s first delivery; these values join in about 1 s.
    kafka_session_timeout_ms: int = Field(default=2000, ge=1)
    kafka_heartbeat_interval_ms: int = Field(default=300, ge=1)
    kafka_max_poll_records: int = Field(default=50, ge=1)
    kafka_max_poll_interval_ms: int = Field(default=300_000, ge=1)
    # The broker answers a fetch as soon as records arrive, so a longer hold adds no
    # latency; it only spares an idle consumer (and the broker) polls: 500 ms, Kafka's own
    # default, halves an idle hub's CPU against 100 ms (docs/configuration.md).
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=0)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1)
    kafka_topic_partitions: int = Field(default=4, ge=1)
    kafka_replication_factor: int = Field(
        default=1, ge=1, description="Replicas of each topic the hub creates; production: 3."
    )
    kafka_min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description=(
            "min.insync.replicas of each topic the hub creates: with acks=all, a write "
            "succeeds only once this many replicas have it; production: 2."
        ),
    )
    kafka_linger_ms: int = Field(default=2, ge=0)

    # How every Kafka client (relay, consumers, DLQ and partner-topic producers, admin,
    # probes, replays) authenticates and encrypts; checked together by KafkaSecurity.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="PLAINTEXT on the embedded default only; production brokers use SASL_SSL.",
    )
    kafka_sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="", description="Required with SASL_PLAINTEXT and SASL_SSL."
    )
    kafka_sasl_username: str = Field(default="", description="This service's Kafka principal.")
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""),
        description="The principal's password; prefer kafka_sasl_password_file (a mounted secret).",
    )
    kafka_sasl_password_file: Path | None = Field(
        default=None, description="A file holding the principal's password (read at start-up)."
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs that sign the brokers' certificates; unset: the "
        "system's trust store.",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="This client's certificate (PEM), for mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="The private key (PEM) of kafka_ssl_certfile."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker's certificate names the host dialled."
    )

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
    retention_schedule_file: Path = Field(
        default=REPO_ROOT / "config" / "retention.yaml",
        description="The retention schedule: how long each kind of record is kept "
        "(read by `earlyhelp retention` and case plan's `GET /v1/retention/due`).",
    )
    retention_pushgateway: str = Field(
        default="",
        description="Prometheus Pushgateway address (host:port or URL) to which "
        "`earlyhelp retention` pushes its metrics; empty pushes nothing.",
    )
    retention_textfile: Path | None = Field(
        default=None,
        description="Or a file for node_exporter's textfile collector that `earlyhelp "
        "retention` writes its metrics to (a .prom file); empty writes none.",
    )
    identities_reload_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "How often the identities file is checked for changes (SIGHUP reloads it at once): "
            "a client removed or narrowed there loses its tokens within this time."
        ),
    )
    encompass_link_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The key that signs the acknowledgement link in each Operation Encompass e-mail "
            "to a school; intake and notifications need the same one (at least 32 random "
            "characters). Empty on the embedded default: generated into var_dir. Empty "
            "elsewhere: the e-mails carry no link, and schools acknowledge through the API or "
            "the front door's telephone call."
        ),
    )
    token_signing_keys: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The token issuer's (intake's) private keys: a JWK Set of one or two Ed25519 keys, "
            "the first of which signs (`earlyhelp token-keys new`). Give it to intake only. "
            "Empty on the embedded default: keys generated into var_dir."
        ),
    )
    token_public_keys: str = Field(
        default="",
        description=(
            "Public keys every service trusts for the hub's tokens, as a JWK Set "
            "(`earlyhelp token-keys public`)."
        ),
    )
    token_jwks_url: str = Field(
        default="",
        description=(
            "The issuer's key set, fetched and cached, and fetched again when a token names "
            "an unknown key, e.g. http://intake:8001/.well-known/jwks.json."
        ),
    )
    jwks_refresh_min_seconds: float = Field(
        default=30.0,
        ge=0,
        description=(
            "The shortest time between two fetches of a key set triggered by unknown key ids, "
            "so that made-up key ids cannot make every request a fetch."
        ),
    )
    oidc_issuer: str = Field(
        default="",
        description="The council's OpenID Connect provider whose staff tokens are accepted "
        "(its `iss`); empty: none.",
    )
    oidc_audience: str = Field(
        default="", description="The `aud` the provider puts in tokens meant for the hub."
    )
    oidc_jwks_url: str = Field(default="", description="The provider's JWK Set URL.")
    oidc_groups_claim: str = Field(
        default="groups",
        description="The claim listing the groups (or app roles) that `staff_groups` in the "
        "identities file maps to the hub's roles, localities and teams.",
    )
    oidc_subject_claim: str = Field(
        default="sub", description="The claim that names a member of staff in the audit log."
    )
    oidc_name_claim: str = Field(default="name", description="The claim with the person's name.")
    token_attempts_per_address_per_minute: int = Field(
        default=60,
        ge=1,
        description="Token requests one remote address may make a minute (burst: the same).",
    )
    token_failures_per_client_per_minute: int = Field(
        default=10,
        ge=1,
        description="Failed token requests naming one client id allowed a minute.",
    )
    token_secret_check_threads: int = Field(
        default=1,
        ge=1,
        description="Threads that check client secrets (scrypt), apart from the event loop "
        "and the threads that read the database: at most this many cores go to hashing.",
    )
    token_secret_check_queue: int = Field(
        default=8,
        ge=0,
        description="Token requests that may wait for a secret-check thread; more are "
        "answered 503 with Retry-After at once.",
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

    @field_validator(
        "database_sslmode",
        "database_sslrootcert",
        "database_sslcert",
        "database_sslkey",
        "kafka_sasl_password_file",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "retention_textfile",
        mode="before",
    )
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # A ConfigMap or compose file often sets a variable to "" to mean "not used".
        return None if value == "" else value

    @model_validator(mode="after")
    def _writable_topics(self) -> HubSettings:
        if self.kafka_min_insync_replicas > self.kafka_replication_factor:
            raise ValueError(
                f"EARLYHELP_KAFKA_MIN_INSYNC_REPLICAS ({self.kafka_min_insync_replicas}) "
                f"exceeds EARLYHELP_KAFKA_REPLICATION_FACTOR ({self.kafka_replication_factor}): "
                "no write with acks=all could ever succeed"
            )
        return self

    @model_validator(mode="after")
    def _consistent_kafka_security(self) -> HubSettings:
        from hub.kafka_security import check_kafka_security

        check_kafka_security(self)
        return self

    @model_validator(mode="after")
    def _default_database(self) -> HubSettings:
        if not self.database_url and self.service_name:
            self.database_url = f"sqlite:///{self.var_dir / (self.service_name + '.db')}"
        return self

    @model_validator(mode="after")
    def _database_tls(self) -> HubSettings:
        """Adds the TLS settings to the PostgreSQL URL as libpq parameters, so that every
        engine made from it (service, migrations, CLI) uses them; refuses combinations
        that would connect without the protection they seem to ask for."""
        given = {
            name: str(value)
            for name, value in {
                "sslmode": self.database_sslmode,
                "sslrootcert": self.database_sslrootcert,
                "sslcert": self.database_sslcert,
                "sslkey": self.database_sslkey,
            }.items()
            if value is not None
        }
        if not given or not self.database_url:  # no database: a Kafka-only command
            return self
        url = make_url(self.database_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError(
                f"TLS settings ({_tls_variables(given)}) are for PostgreSQL only, and "
                f"EARLYHELP_DATABASE_URL is {url.get_backend_name() or 'empty'}"
            )
        for name, value in given.items():
            if url.query.get(name, value) != value:
                raise ValueError(
                    f"{name} is given both in EARLYHELP_DATABASE_URL and as "
                    f"EARLYHELP_DATABASE_{name.upper()}, differently: give it once"
                )
        tls = {**url.query, **given}
        _check_database_tls(tls)
        self.database_url = url.update_query_dict(tls).render_as_string(hide_password=False)
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    @property
    def consumer_group(self) -> str:
        return f"earlyhelp-{self.service_name}"


_VERIFYING_MODES = ("verify-ca", "verify-full")


def _tls_variables(names: dict[str, str]) -> str:
    return ", ".join(f"EARLYHELP_DATABASE_{name.upper()}" for name in names)


def _check_database_tls(tls: Mapping[str, str | tuple[str, ...]]) -> None:
    """Refuses TLS parameters that libpq would accept but that do not do what they say."""
    mode = tls.get("sslmode")
    rootcert, cert, key = tls.get("sslrootcert"), tls.get("sslcert"), tls.get("sslkey")
    if (cert is None) != (key is None):
        raise ValueError(
            "give both EARLYHELP_DATABASE_SSLCERT and EARLYHELP_DATABASE_SSLKEY, or neither"
        )
    if rootcert is not None and mode not in _VERIFYING_MODES:
        # libpq would use it only with verify-ca or verify-full (or require, silently
        # upgraded): say which is meant rather than leave it to a file's presence.
        raise ValueError(
            "EARLYHELP_DATABASE_SSLROOTCERT is used only with EARLYHELP_DATABASE_SSLMODE "
            f"verify-ca or verify-full, not {mode or 'unset (prefer)'}"
        )
    if mode in _VERIFYING_MODES and rootcert is None:
        raise ValueError(
            f"EARLYHELP_DATABASE_SSLMODE={mode} needs EARLYHELP_DATABASE_SSLROOTCERT: the CA "
            "certificate file that signed the server's, or `system`"
        )
    if cert is not None and mode not in ("require", *_VERIFYING_MODES):
        raise ValueError(
            "a client certificate needs EARLYHELP_DATABASE_SSLMODE require, verify-ca or "
            f"verify-full, not {mode or 'unset (prefer)'}: it would be sent in clear or not at all"
        )
    for name, path in (("sslrootcert", rootcert), ("sslcert", cert), ("sslkey", key)):
        if isinstance(path, str) and path != "system" and not Path(path).is_file():
            raise ValueError(f"EARLYHELP_DATABASE_{name.upper()}: no file at {path}")
