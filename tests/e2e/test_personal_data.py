"""A family's personal values stay in the records: never in a log line, a dead-letter
header, a span or a metric, and never echoed in a problem.

The four services run as processes, at DEBUG with the access log on, exporting
their spans to an OTLP collector this test runs, and a partner's webhook
receiver takes the notifications. The journey is a partner's referral through
triage, allocation and an assessment naming the family, with the failures that
used to leak: refused submissions quoting personal values, a database error in
intake's request (a 500) and in two consumers (retried, then dead-lettered),
whose statements carried the family's values as bound parameters (and, on
PostgreSQL, a `DETAIL: Failing row contains (...)` quoting them).

Then every log line, every DLQ header, every exported span (attributes, events,
status) and every service's /metrics are searched for each personal value.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from hub.contracts.identifiers import nhs_number_check_digit
from hub.contracts.topics import dlq_topic, service_topic
from intake.schemas import ReferralSubmission
from tests.e2e.support import accepted, read_topic
from tests.e2e.test_case_lifecycle import ASSESSMENT, DECISION
from tests.harness import PARTNER, SERVICES, Hub, query, wait_for
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

FRONT_DOOR, MANAGER = "front-door-demo", "harlesden-team-manager"
TODAY = date.today()
WAIT_S = 90.0  # a bound, not a pace: generous for a loaded machine
PROBE = "privacy_probe"


def _nhs_number(nine_digits: str) -> str:
    check = nhs_number_check_digit(nine_digits)
    assert check is not None, nine_digits
    return f"{nine_digits}{check}"


@dataclass(frozen=True)
class Family:
    """One family's distinctive personal values, and a referral about them."""

    child: tuple[str, str]
    parent: tuple[str, str]
    child_dob: str
    parent_dob: str
    nhs: str
    street: str
    referrer: tuple[str, str]
    phone: str
    email: str
    concern: str
    postcode: str = "NW10 4XZ"

    def stored_values(self) -> list[str]:
        """The values as the hub stores them."""
        return [
            *self.child,
            *self.parent,
            self.child_dob,
            self.parent_dob,
            self.nhs,
            self.street,
            *self.referrer,
            self.phone,
            self.email,
            self.concern,
        ]

    def values(self) -> list[str]:
        """Every form of them a leak could take."""
        return [
            *self.stored_values(),
            f"{self.nhs[:3]} {self.nhs[3:6]} {self.nhs[6:]}",
            self.postcode,
            self.postcode.replace(" ", ""),
            self.phone.replace(" ", ""),
        ]

    def referral(self, reference: str) -> dict:
        body = copy.deepcopy(ReferralSubmission.model_config["json_schema_extra"]["examples"][0])
        body["partner_reference"] = reference
        body["referrer"] |= {
            "person_name": " ".join(self.referrer),
            "phone": self.phone,
            "email": self.email,
        }
        body["concerns"]["description"] = self.concern
        body["consent"]["given_by"] = " ".join(self.parent)
        address = {"lines": [self.street], "town": "London", "postcode": self.postcode}
        body["children"] = [
            {
                "given_name": self.child[0],
                "family_name": self.child[1],
                "date_of_birth": self.child_dob,
                "nhs_number": self.nhs,
                "address": address,
            }
        ]
        body["household_members"] = [
            {
                "given_name": self.parent[0],
                "family_name": self.parent[1],
                "relationship": "mother",
                "date_of_birth": self.parent_dob,
                "parental_responsibility": True,
            }
        ]
        return body


def _years_ago(years: int) -> str:
    # School age, so that auto-allocation picks Harlesden's early help team (5-19).
    return (TODAY - timedelta(days=365 * years + 41)).isoformat()


# Refused, dead-lettered: its values are in intake's store and the consumers' DLQ.
REFUSED = Family(
    child=("Zephyrine", "Quillfeather"),
    parent=("Ottoline", "Quillfeather"),
    child_dob=_years_ago(9),
    parent_dob="1983-02-27",
    nhs=_nhs_number("999512340"),
    street="41 Brackenbury Mews",
    referrer=("Perpetua", "Vanterpool"),
    phone="020 7946 0712",
    email="perpetua.vanterpool@harlesden-primary.example.org",
    concern="Zephyrine showed her teacher bruises from the weekend at her uncle's flat",
)
# Carried through triage, allocation and assessment.
CARRIED = Family(
    child=("Wilhelmina", "Drummondsworth"),
    parent=("Cordelia", "Drummondsworth"),
    child_dob=_years_ago(8),
    parent_dob="1979-10-04",
    nhs=_nhs_number("999512351"),
    street="7 Quernmore Gardens",
    referrer=("Benedikta", "Farquharson"),
    phone="020 7946 0899",
    email="benedikta.farquharson@harlesden-primary.example.org",
    concern="Wilhelmina has been sleeping in the car with her dad since the eviction notice",
)


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver keeping each export in protobuf text format: every
    span's name, attributes, events and status, as the trace backend would get them."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.exports: list[str] = []
        self.services: set[str] = set()
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        services = {
            a.value.string_value
            for spans in request.resource_spans
            for a in spans.resource.attributes
            if a.key == "service.name"
        }
        with self.server.lock:
            self.server.exports.append(str(request))
            self.server.services |= services
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(tmp_path / "receiver") as started:
        yield started


# --- making the database refuse a table's inserts ----------------------------------


def refuse_inserts(database_url: str, table: str) -> None:
    """Every insert into `table` fails in the database, with the row's values bound."""
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool, hide_parameters=True)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER {PROBE} BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'refused by the privacy test'); END"
            )
        else:
            # PostgreSQL's check_violation quotes the row: DETAIL: Failing row contains (...).
            conn.exec_driver_sql(
                f"ALTER TABLE {table} ADD CONSTRAINT {PROBE} CHECK (false) NOT VALID"
            )
    engine.dispose()


def accept_inserts(database_url: str, table: str) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool, hide_parameters=True)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER {PROBE}")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {PROBE}")
    engine.dispose()


# --- the search ---------------------------------------------------------------------


def leaks(sources: dict[str, str], values: list[str]) -> list[str]:
    """Each place a personal value appears, with the text around it."""
    found = []
    for where, text in sources.items():
        folded = text.casefold()
        for value in values:
            at = folded.find(value.casefold())
            if at >= 0:
                found.append(f"{value!r} in {where}: ...{text[max(at - 150, 0) : at + 150]}...")
    return found


def _ok(response: httpx.Response, hub: Hub, service: str, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.text}\n{hub.logs_tail([service])}"
    return response.json()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_personal_values_reach_no_log_header_span_metric_or_problem(
    backend: str,
    start_hub,
    own_broker,
    collector: Collector,
    receiver: WebhookReceiver,
    client: httpx.Client,
) -> None:
    hub = start_hub(
        own_broker.bootstrap_servers,
        backend,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "EARLYHELP_LOG_LEVEL": "DEBUG",
            "EARLYHELP_HTTP_ACCESS_LOG": "true",
            # The receiver is plain http on 127.0.0.1; PostgreSQL hubs otherwise want https.
            "EARLYHELP_NOTIFICATIONS_ALLOW_HTTP_WEBHOOKS": "true",
        },
    )
    intake, allocation, caseplan = (hub.url(s) for s in ("intake", "allocation", "caseplan"))
    problems: dict[str, str] = {}

    # The referring school hears of its referrals by webhook: personal data, rightly, there.
    subscribed = _ok(
        client.post(
            hub.url("notifications") + "/v1/subscriptions",
            json={
                "event_types": ["earlyhelp.referral.received.v1"],
                "delivery": {"type": "webhook", "url": receiver.url(PARTNER)},
            },
            headers=hub.auth(PARTNER),
        ),
        hub,
        "notifications",
        201,
    )
    receiver.configure(PARTNER, secret=subscribed["secret"])

    # Submissions refused for a value in the wrong place: the problem names the field only.
    def refused(body: dict, what: str) -> None:
        response = client.post(intake + "/v1/referrals", json=body, headers=hub.auth())
        assert response.status_code == 422, (what, response.text)
        problems[f"422 problem ({what})"] = response.text

    body = REFUSED.referral("PRIV-0")
    child = body["children"][0]
    refused(
        body | {"children": [child | {"date_of_birth": " ".join(REFUSED.child)}]}, "date of birth"
    )
    refused(body | {"children": [child | {"nhs_number": REFUSED.street}]}, "NHS number")
    refused(body | {"children": [child | {"address": REFUSED.email}]}, "address")
    refused(body | {"urgency": REFUSED.concern}, "urgency")
    refused(body | {"notes": REFUSED.phone}, "unknown field")

    # A database error under intake's request: the family's values are bound to the insert.
    refuse_inserts(hub.database_url("intake"), "known_people")
    failed = client.post(intake + "/v1/referrals", json=body, headers=hub.auth())
    assert failed.status_code == 500, failed.text
    problems["500 problem"] = failed.text
    accept_inserts(hub.database_url("intake"), "known_people")
    assert "Unhandled error" in hub.log("intake"), hub.logs_tail(["intake"])

    # The same referral accepted; allocation's and case plan's projections fail in the
    # database on it, are retried and dead-letter it.
    refuse_inserts(hub.database_url("allocation"), "incoming_referrals")
    refuse_inserts(hub.database_url("caseplan"), "family_referrals")
    accepted(client.post(intake + "/v1/referrals", json=body, headers=hub.auth()), hub)
    intake_dlq = dlq_topic(service_topic("intake"))

    def dead_letters() -> list:
        records = read_topic(hub.bootstrap_servers, intake_dlq)
        consumers = {dict(r.headers).get("dlq_consumer", b"").decode() for r in records}
        wanted = {"earlyhelp-allocation", "earlyhelp-caseplan"}
        return records if wanted <= consumers else []

    wait_for(dead_letters, WAIT_S, lambda: "no dead letters\n" + hub.logs_tail())
    accept_inserts(hub.database_url("allocation"), "incoming_referrals")
    accept_inserts(hub.database_url("caseplan"), "family_referrals")

    # A copy whose data no longer validates (a name where the date of birth belongs) is
    # dead-lettered by every consumer without being decoded.
    (original,) = read_topic(hub.bootstrap_servers, service_topic("intake"))
    tampered = original.value.replace(
        f'"{REFUSED.child_dob}"'.encode(), f'"{" ".join(REFUSED.child)}"'.encode()
    )
    assert tampered != original.value
    producer = KafkaProducer(bootstrap_servers=hub.bootstrap_servers)
    producer.send(original.topic, key=original.key, value=tampered, headers=original.headers).get(
        timeout=10
    )
    producer.close()

    def undecoded() -> list:
        records = read_topic(hub.bootstrap_servers, intake_dlq)
        return [r for r in records if dict(r.headers)["dlq_reason"].startswith(b"invalid data")]

    wait_for(lambda: len(undecoded()) == 3, WAIT_S, lambda: "not dead-lettered\n" + hub.logs_tail())

    # Another family's referral carried through triage, allocation and an assessment.
    referral = accepted(
        client.post(intake + "/v1/referrals", json=CARRIED.referral("PRIV-1"), headers=hub.auth()),
        hub,
    )
    triaged = _ok(
        client.post(
            f"{intake}/v1/referrals/{referral.referral_id}/triage",
            json=DECISION,
            headers=hub.auth(FRONT_DOOR),
        ),
        hub,
        "intake",
    )
    case_id = triaged["triage"]["case_id"]

    def queued() -> bool:
        response = client.get(
            f"{allocation}/v1/allocations",
            params={"status": "unallocated", "locality": "brent-harlesden", "limit": 200},
            headers=hub.auth(MANAGER),
        )
        return any(i["case_id"] == case_id for i in _ok(response, hub, "allocation")["items"])

    wait_for(queued, WAIT_S, lambda: "never queued\n" + hub.logs_tail(["allocation"]))
    _ok(
        client.post(
            f"{allocation}/v1/cases/{case_id}/allocation",
            json={"auto": True},
            headers=hub.auth(MANAGER),
        ),
        hub,
        "allocation",
        201,
    )

    def opened() -> bool:
        response = client.get(f"{caseplan}/v1/cases/{case_id}", headers=hub.auth(MANAGER))
        return response.status_code == 200

    wait_for(opened, WAIT_S, lambda: "case never opened\n" + hub.logs_tail(["caseplan"]))
    assessment = copy.deepcopy(ASSESSMENT)
    for person, name in zip(assessment["people"], (CARRIED.child, CARRIED.parent), strict=True):
        person["name"] = " ".join(name)
    assessment["views"]["child"] = CARRIED.concern
    _ok(
        client.post(
            f"{caseplan}/v1/cases/{case_id}/assessments",
            json=assessment,
            headers=hub.auth(MANAGER),
        ),
        hub,
        "caseplan",
        201,
    )
    wait_for(
        lambda: len([r for r in receiver.records(PARTNER) if r["accepted"]]) >= 2,
        WAIT_S,
        lambda: "webhooks missing\n" + hub.logs_tail(["notifications"]),
    )
    wait_for(
        lambda: collector.services >= set(SERVICES),
        WAIT_S,
        lambda: f"spans only from {collector.services}",
    )
    metrics = {
        f"{service} /metrics": client.get(hub.url(service) + "/metrics").text
        for service in SERVICES
    }
    stored = query(hub.database_url("intake"), "SELECT data FROM event_store")
    dead = read_topic(hub.bootstrap_servers, intake_dlq)
    for service in SERVICES:
        hub.stop_service(service)  # flushes the last spans and log lines

    # What is searched holds what the search would find: the values are in the records,
    # and the failures happened and were reported.
    records_text = "\n".join(str(row["data"]) for row in stored)
    kept = REFUSED.stored_values() + CARRIED.stored_values()
    assert len(leaks({"intake's event store": records_text}, kept)) == len(kept)
    assert all(dict(record.headers).get("dlq_reason") for record in dead), dead
    for service in ("allocation", "caseplan"):
        assert "IntegrityError" in hub.log(service), hub.logs_tail([service])

    sources = dict(problems) | metrics
    for service in SERVICES:
        for number, line in enumerate(hub.log(service).splitlines(), 1):
            sources[f"{service}.log line {number}"] = line
    for record in dead:
        for name, value in record.headers:
            if name.startswith("dlq_"):
                sources[f"DLQ offset {record.offset} header {name}"] = value.decode()
    with collector.lock:
        for number, export in enumerate(collector.exports):
            sources[f"OTLP export {number}"] = export
    found = leaks(sources, REFUSED.values() + CARRIED.values())
    assert not found, "\n".join(found[:20]) + f"\n({len(found)} in all)"
