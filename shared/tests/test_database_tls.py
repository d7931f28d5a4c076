"""PostgreSQL over TLS: the settings reach every engine, and the wrong combinations are refused.

The connection tests run a PostgreSQL server of their own (the machine's `initdb` and
`pg_ctl`) that accepts only TLS connections authenticated by a client certificate, under
a certificate authority made here; skipped where no PostgreSQL server binaries are found.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from hub.broker import free_port
from hub.db import Database
from hub.settings import REPO_ROOT, HubSettings

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- which combinations are refused ------------------------------------------------------


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "some.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def _refusal(**settings: object) -> str:
    with pytest.raises(ValidationError) as raised:
        HubSettings(**settings)
    return str(raised.value.errors()[0]["msg"])


def test_the_settings_become_libpq_parameters_of_the_database_url(pem: Path) -> None:
    settings = HubSettings(
        database_url=PG_URL,
        database_sslmode="verify-full",
        database_sslrootcert=str(pem),
        database_sslcert=pem,
        database_sslkey=pem,
    )
    query = sa.engine.make_url(settings.database_url).query
    assert query == {
        "sslmode": "verify-full",
        "sslrootcert": str(pem),
        "sslcert": str(pem),
        "sslkey": str(pem),
    }
    # Read again (as a copied settings object is), nothing conflicts with itself.
    assert HubSettings(**settings.model_dump()).database_url == settings.database_url


def _pg(url: str = PG_URL, **tls: str) -> dict[str, str]:
    return {"database_url": url, **{f"database_ssl{name}": value for name, value in tls.items()}}


PEM = "{pem}"


@pytest.mark.parametrize(
    ("settings", "refusal"),
    [
        ({"service_name": "intake", "database_sslmode": "require"}, "are for PostgreSQL only"),
        (_pg(mode="verify-full"), "needs EARLYHELP_DATABASE_SSLROOTCERT"),
        (_pg(mode="verify-ca"), "needs EARLYHELP_DATABASE_SSLROOTCERT"),
        (_pg(rootcert=PEM), "not unset (prefer)"),
        (_pg(mode="require", rootcert=PEM), "only with"),
        (_pg(mode="require", cert=PEM), "both"),
        (_pg(mode="require", key=PEM), "both"),
        (_pg(mode="disable", cert=PEM, key=PEM), "client certificate needs"),
        (_pg(cert=PEM, key=PEM), "client certificate needs"),
        (_pg(mode="verify-full", rootcert="/nowhere/ca.pem"), "no file at /nowhere/ca.pem"),
        (_pg(PG_URL + "?sslmode=disable", mode="require"), "given both in EARLYHELP_DATABASE_URL"),
        (_pg(PG_URL + "?sslmode=verify-full"), None),  # the URL alone is libpq's affair
        (_pg(mode="verify-full", rootcert="system"), None),
    ],
)
def test_combinations_that_would_not_protect_the_connection_are_refused(
    settings: dict, refusal: str | None, pem: Path
) -> None:
    settings = {k: v.replace(PEM, str(pem)) for k, v in settings.items()}
    if refusal is None:
        assert HubSettings(**settings).database_url.startswith(settings["database_url"])
    else:
        assert refusal in _refusal(**settings)


def test_empty_settings_are_unset_as_a_compose_file_gives_them(pem: Path) -> None:
    """deploy/compose.yaml passes `${EARLYHELP_DATABASE_SSLMODE:-}`: empty is no TLS setting."""
    settings = HubSettings(
        database_url=PG_URL,
        database_sslmode="",
        database_sslrootcert="",
        database_sslcert="",
        database_sslkey="",
    )
    assert settings.database_url == PG_URL


def test_the_url_s_own_parameters_count_when_the_settings_add_to_them(pem: Path) -> None:
    assert "needs EARLYHELP_DATABASE_SSLROOTCERT" in _refusal(
        database_url=PG_URL + "?sslmode=verify-full", database_sslcert=pem, database_sslkey=pem
    )
    settings = HubSettings(database_url=f"{PG_URL}?sslrootcert={pem}", database_sslmode="verify-ca")
    assert "sslrootcert" in settings.database_url and "sslmode=verify-ca" in settings.database_url


# --- a PostgreSQL server that takes TLS with client certificates only ---------------------


@dataclass(frozen=True)
class TlsPostgres:
    port: int
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@localhost:{self.port}/postgres"

    def env(self, **tls: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("EARLYHELP_")},
            "EARLYHELP_DATABASE_URL": self.url,
            **{f"EARLYHELP_DATABASE_{name.upper()}": value for name, value in tls.items()},
        }


def _key_and_cert(
    folder: Path, name: str, common_name: str, issuer: tuple | None, *, ca: bool = False
) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key, signer_name = issuer if issuer else (key, subject)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return key, subject


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on the PATH")
    # The server refuses to run as root: run it as the machine's postgres user then.
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="earlyhelp-tls-pg-"))
    data, certs = folder / "data", folder / "certs"
    certs.mkdir()
    ca = _key_and_cert(certs, "ca", "earlyhelp test CA", None, ca=True)
    _key_and_cert(certs, "server", "localhost", ca)
    _key_and_cert(certs, "client", "postgres", ca)  # cert authentication maps CN to the user
    _key_and_cert(certs, "other-ca", "some other CA", None, ca=True)
    if owner is not None:
        for path in (folder, certs, certs / "server.key", certs / "server.crt", certs / "ca.crt"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
        )
        (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 cert\n")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{folder}'\nssl = on\n"
                f"ssl_cert_file = '{certs / 'server.crt'}'\n"
                f"ssl_key_file = '{certs / 'server.key'}'\n"
                f"ssl_ca_file = '{certs / 'ca.crt'}'\n"
            )
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield TlsPostgres(
            port,
            ca=certs / "ca.crt",
            other_ca=certs / "other-ca.crt",
            client_cert=certs / "client.crt",
            client_key=certs / "client.key",
        )
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def _full_tls(server: TlsPostgres) -> dict[str, str]:
    return {
        "sslmode": "verify-full",
        "sslrootcert": str(server.ca),
        "sslcert": str(server.client_cert),
        "sslkey": str(server.client_key),
    }


def _settings(server: TlsPostgres, tls: dict[str, str]) -> HubSettings:
    return HubSettings(database_url=server.url, **{f"database_{k}": v for k, v in tls.items()})


def test_a_service_s_database_connects_over_verified_tls_with_its_client_certificate(
    tls_postgres: TlsPostgres,
) -> None:
    settings = _settings(tls_postgres, _full_tls(tls_postgres))
    db = Database(settings.database_url)
    try:
        with db.read() as conn:
            ssl, version = conn.exec_driver_sql(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).one()
    finally:
        db.dispose()
    assert ssl is True
    assert version.startswith("TLSv1.")


def test_the_earlyhelp_command_migrates_over_the_same_tls(tls_postgres: TlsPostgres) -> None:
    """`earlyhelp migrate` (Alembic's engine) reads the same settings as the service."""
    migrate = subprocess.run(
        [sys.executable, "-m", "hub.cli", "migrate", "notifications"],
        env=tls_postgres.env(**_full_tls(tls_postgres)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    settings = _settings(tls_postgres, _full_tls(tls_postgres))
    engine = sa.create_engine(settings.database_url, hide_parameters=True)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("event_store")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"sslrootcert": "other_ca"}, "certificate verify failed"),
        ({"sslcert": None, "sslkey": None}, "certificate"),
        (
            {"sslmode": "disable", "sslrootcert": None, "sslcert": None, "sslkey": None},
            "no encryption",
        ),
    ],
    ids=["server-cert-from-another-ca", "no-client-cert", "without-tls"],
)
def test_connections_that_are_not_verified_tls_with_a_client_certificate_fail(
    tls_postgres: TlsPostgres, change: dict, refusal: str
) -> None:
    tls = _full_tls(tls_postgres)
    for name, value in change.items():
        if value is None:
            tls.pop(name)
        else:
            # A mode as it is; a file by the server's attribute naming it.
            tls[name] = value if name == "sslmode" else str(getattr(tls_postgres, value))
    settings = HubSettings(
        database_url=tls_postgres.url, **{f"database_{k}": v for k, v in tls.items()}
    )
    db = Database(settings.database_url)
    try:
        with pytest.raises(sa.exc.OperationalError) as raised:
            db.check()
    finally:
        db.dispose()
    assert refusal in str(raised.value.orig)
