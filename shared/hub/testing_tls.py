"""Test support for TLS: throw-away certificates, and a stunnel proxy in front of the broker.

Tansu 0.6's own TLS does not answer a handshake, so the broker listens on an
inner port, advertises the proxy's port, and Debian's stunnel4 terminates TLS
(optionally requiring a client certificate, as Apache Kafka's
`ssl.client.auth=required` does). Certificates are made at test time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_STUNNEL_NAMES = ("stunnel4", "stunnel")


def stunnel_binary() -> str:
    """stunnel's path, installing Debian's stunnel4 when it is missing (as `make bench`
    installs wrk), so a fresh CI machine proves TLS instead of skipping it."""
    found = next(filter(None, map(shutil.which, _STUNNEL_NAMES)), None)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the broker TLS tests need stunnel: install it with `apt-get install stunnel4`")
    # Parallel test workers may both get here: wait for each other's dpkg lock.
    install = ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", "stunnel4"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"could not install stunnel4: {done.stderr.strip()[-500:]}")
    found = next(filter(None, map(shutil.which, _STUNNEL_NAMES)), None)
    assert found, "stunnel4 was installed but is not on the PATH"
    return found


@dataclass(frozen=True)
class Credentials:
    certfile: Path
    keyfile: Path


class CertificateAuthority:
    """A throw-away CA that issues server and client certificates into `folder`."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self._subject = subject
        self._certificate = (
            _builder(subject, subject, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cafile = folder / f"{name}-ca.pem"
        self.cafile.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool) -> Credentials:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = _builder(subject, self._subject, key.public_key()).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        certificate = builder.sign(self._key, hashes.SHA256())
        credentials = Credentials(
            certfile=self.folder / f"{common_name}.pem", keyfile=self.folder / f"{common_name}.key"
        )
        credentials.certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        credentials.keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        credentials.keyfile.chmod(0o600)
        return credentials


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    # Certificates valid from a day before the test runs: the test does not depend on the clock
    # beyond that (and stunnel checks validity against the real clock anyway).
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )


class TlsProxy:
    """stunnel accepting TLS on `port` and forwarding to the broker's plain `target_port`.

    With `client_cafile` it requires a client certificate signed by that CA
    (stunnel `verify = 2`), refusing the handshake otherwise.
    """

    def __init__(
        self,
        folder: Path,
        port: int,
        target_port: int,
        server: Credentials,
        client_cafile: Path | None = None,
    ) -> None:
        self.port = port
        self.log_path = folder / f"stunnel-{port}.log"
        lines = [
            "foreground = yes",
            "pid =",
            "debug = 5",
            f"output = {self.log_path}",
            "[kafka]",
            f"accept = 127.0.0.1:{port}",
            f"connect = 127.0.0.1:{target_port}",
            f"cert = {server.certfile}",
            f"key = {server.keyfile}",
        ]
        if client_cafile is not None:
            lines += ["verify = 2", f"CAfile = {client_cafile}"]
        self._config = folder / f"stunnel-{port}.conf"
        self._config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self._process = subprocess.Popen(
            [stunnel_binary(), str(self._config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = self.log_path.read_text() if self.log_path.exists() else ""
                self.stop()
                raise RuntimeError(f"stunnel did not listen on {self.port}:\n{log[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
