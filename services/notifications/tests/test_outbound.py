"""Webhooks cannot reach inside: destinations refused when subscribing and on every
connection, the connection made to the address that was checked, failures told by class."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.broker import free_port
from notifications.outbound import Destinations, webhook_client

from .conftest import SCHOOL, as_, referral, subscribe, wait_until

# The URLs the issue found accepted, tried as a partner would.
ISSUE_URLS = [
    "https://169.254.169.254/latest/meta-data",
    "https://[::ffff:a9fe:a9fe]/",
    "https://0xa9fea9fe/",
    "https://10.0.0.5",
    "https://127.0.0.1:9092",
    "https://kubernetes.default.svc",
]
OTHER_INSIDE = [
    "https://2852039166/",  # 169.254.169.254 in decimal
    "https://0251.0376.0251.0376/",  # and in octal
    "https://127.1/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "https://[2002:a9fe:a9fe::]/",  # 6to4
    "https://[fe80::1]/",
    "https://[fd00:ec2::254]/",  # AWS metadata over IPv6 (unique-local)
    "https://100.100.100.200/",  # Alibaba metadata (shared address space)
    "https://192.168.1.1/",
    "https://172.16.0.1/",
    "https://0.0.0.0/",
    "https://224.0.0.1/",
    "https://[ff02::1]/",
    "https://255.255.255.255/",
    "https://localhost/",
    "https://intake:8001/",
    "https://db.internal/",
    "https://printer.local/",
]
PUBLIC = [
    "https://93.184.215.14/hooks",
    "https://[2606:4700:4700::1111]/hooks",
    "https://mis.harlesden-primary.example.org/hooks/earlyhelp",  # not resolvable yet
]


@pytest.mark.parametrize("url", ISSUE_URLS + OTHER_INSIDE)
def test_inside_addresses_in_every_spelling_are_refused(url):
    assert Destinations().refusal(url) is not None


@pytest.mark.parametrize("url", PUBLIC)
def test_public_destinations_are_accepted(url):
    assert Destinations().refusal(url) is None


def test_the_operator_allow_list_is_the_only_way_in():
    allowed = Destinations([ipaddress.ip_network("127.0.0.1/32")])
    assert allowed.refusal("http://127.0.0.1:8080/hooks") is None
    assert allowed.refusal("http://localhost:8080/hooks") is None  # it resolves there
    assert allowed.refusal("http://127.0.0.2:8080/hooks") is not None
    assert allowed.refusal("https://169.254.169.254/") is not None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_subscribing_to_an_inside_url_is_refused_with_422(notifications):
    app = notifications(webhook_allowed_networks="")  # as deployed: no allow-list
    for url in ISSUE_URLS:
        response = app.post(
            "/v1/subscriptions",
            json={"event_types": ["earlyhelp.case.*"], "delivery": {"type": "webhook", "url": url}},
            headers=as_(app, SCHOOL),
        )
        assert response.status_code == 422, (url, response.text)
        [error] = response.json()["errors"]
        assert (error["field"], error["code"]) == ("delivery.url", "forbidden_address")
    listed = app.get("/v1/subscriptions", headers=as_(app, SCHOOL)).json()
    assert listed["items"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_delivery_checks_again_and_tells_the_partner_only_the_class(
    notifications, receiver, publish
):
    # Subscribed while the operator allowed this machine; the allow-list is then emptied.
    app = notifications()
    school = receiver()
    sub = subscribe(app, SCHOOL, ["earlyhelp.referral.*"], school)
    notifications.stop(app)
    app = notifications(webhook_allowed_networks="")
    publish(referral())
    path = f"/v1/subscriptions/{sub['subscription_id']}/deliveries"

    def failed():
        items = app.get(path, headers=as_(app, SCHOOL)).json()["items"]
        return [d for d in items if d["last_error"]]

    [delivery] = wait_until(failed, message="the delivery was never attempted")
    assert delivery["last_error"] == "ConnectError: forbidden address"
    assert school.received == []


# --- the client, against real local servers ------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.hosts.append(self.headers["Host"])
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
        else:
            self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.hosts = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _certificate_for(name: str, folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for `name`: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)

    def issue(subject, issuer, public_key, signing_key, *, ca):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            )
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = issue(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    leaf = issue(leaf_name, ca_name, key.public_key(), ca_key, ca=False)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


LOOPBACK = [ipaddress.ip_network("127.0.0.1/32")]


def _client(destinations, verify=True, timeout_s=5.0):
    return webhook_client(
        destinations, timeout=httpx.Timeout(timeout_s), max_connections=4, verify=verify
    )


def _failure(client, url) -> str:
    with pytest.raises(httpx.HTTPError) as raised:
        client.post(url, content=b"{}")
    return str(raised.value)


def test_the_client_connects_to_the_checked_address_keeping_the_name_for_tls(server, tmp_path):
    """partner.example is known only to the resolver the check used: reaching the server
    proves the connection went to the address checked, with no second lookup, while the
    certificate was verified for the name and the Host header kept it."""
    ca, cert, key = _certificate_for("partner.example", tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    lookups = []

    def resolve(host, _port):
        lookups.append(host)
        return ["127.0.0.1"] if host == "partner.example" else []

    trusting = ssl.create_default_context(cafile=str(ca))
    with _client(Destinations(LOOPBACK, resolve), verify=trusting) as client:
        response = client.post(f"https://partner.example:{port}/hooks", content=b"{}")
    assert response.status_code == 204
    assert server.hosts == [f"partner.example:{port}"]
    assert lookups == ["partner.example"]

    with _client(Destinations(LOOPBACK, resolve)) as untrusting:
        assert _failure(untrusting, f"https://partner.example:{port}/") == "TLS handshake failed"


def test_a_name_resolving_inside_is_refused_before_connecting(server):
    port = server.server_address[1]
    inside = Destinations((), lambda host, _port: ["127.0.0.1"])
    with _client(inside) as client:
        assert _failure(client, f"http://partner.example:{port}/") == "forbidden address"
        assert _failure(client, f"http://0x7f000001:{port}/") == "forbidden address"
    assert server.hosts == []


def test_redirects_are_not_followed(server):
    port = server.server_address[1]
    with _client(Destinations(LOOPBACK)) as client:
        response = client.post(f"http://127.0.0.1:{port}/redirect", content=b"{}")
    assert response.status_code == 302
    assert len(server.hosts) == 1


def test_failures_are_told_by_class_not_by_their_text():
    closed = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        with _client(Destinations(LOOPBACK), timeout_s=0.5) as client:
            assert _failure(client, f"http://127.0.0.1:{closed}/") == "connection refused"
            silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
            assert _failure(client, silent_url) == "timed out"
        with _client(Destinations(LOOPBACK, lambda host, port: [])) as client:
            assert _failure(client, "http://nowhere.example:80/") == "forbidden address"
        with _client(Destinations()) as client:
            assert _failure(client, "http://name.invalid/") == "unresolvable host"
    finally:
        silent.close()
