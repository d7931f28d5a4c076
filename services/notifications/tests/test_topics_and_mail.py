"""Partner topics on the real broker, and e-mail to a Maildir and through a real SMTP server
(aiosmtpd, listening on 127.0.0.1)."""

import email
import json
import mailbox
import ssl
from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer, TopicPartition

from hub.broker import free_port
from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.intake import ReferralTriaged
from hub.testing_tls import CertificateAuthority

from .conftest import POLICE, all_fanned_out, family_key, referral, subscribe, wait_until
from .sharing import Case, projected


def test_a_partner_topic_carries_the_same_minimised_events(
    notifications, publish, kafka_bootstrap, database_url
):
    app = notifications()
    sub = subscribe(app, POLICE, ["earlyhelp.case.*", "earlyhelp.referral.*"], "topic")
    received = referral()
    case = Case(received)
    case_id = case.case_id
    # Police join the case's team after its triage: they hear of the case from then on.
    for event in (received, case.triaged(), case.member_added(POLICE)):
        publish(event)
    wait_until(lambda: projected(database_url, "team_members", case_id) == 1)
    publish(case.allocated())

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    topic = sub["delivery"]["topic"]
    key = family_key(POLICE, received.family_id).encode()
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(topic), message="no topic")
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        records = []

        def family_records():
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return [r for r in records if r.key == key]

        mine = wait_until(lambda: len(family_records()) >= 1 and family_records())
    finally:
        consumer.close()
    headers = [{k: v.decode() for k, v in r.headers} for r in mine]
    # Police hear of the case as a team member under the family's consent; the referral
    # itself was the school's, and its triage came before police joined.
    assert [h["ce_type"] for h in headers] == ["earlyhelp.case.allocated.v1"]
    assert {h["ce_dataclassification"] for h in headers} == {"restricted"}
    assert {h["ce_datacategory"] for h in headers} == {"case-detail"}
    assert headers[0]["ce_partitionkey"] == key.decode() != str(received.family_id)
    data = json.loads(mine[0].value)
    assert data["case_id"] == str(case_id)
    assert set(data) == {
        "case_id",
        "locality",
        "team_id",
        "allocated_at",
        "is_reallocation",
        "lead_professional",
    }


def _case(publish, received, review_in_days=3):
    case_id = uuid4()
    now = datetime.now(UTC)
    ids = {"family_id": received.family_id, "case_id": case_id}
    publish(
        ReferralTriaged.example().model_copy(
            update={"referral_id": received.referral_id, "decided_at": now} | ids
        )
    )
    publish(CaseAllocated.example().model_copy(update=ids))
    publish(
        PanelDecisionRecorded.example().model_copy(
            update={"decided_at": now, "review_date": date.today() + timedelta(days=review_in_days)}
            | ids
        )
    )
    return case_id


def test_referrer_and_lead_professional_are_e_mailed_once_and_minimally(
    notifications, publish, tmp_path, database_url
):
    notifications()
    received = referral(reference="HPS-2025-0117", email="jo.adeyemi@school.example.org")
    publish(received)
    case_id = _case(publish, received)
    box = tmp_path / "mailbox"

    def messages():
        return list(mailbox.Maildir(box, create=False)) if (box / "cur").exists() else []

    wait_until(lambda: len(messages()) == 4, message="not every e-mail was written")
    by_recipient = {}
    for message in messages():
        by_recipient.setdefault(message["To"], []).append(message)
    referrer = sorted(m["Subject"] for m in by_recipient["jo.adeyemi@school.example.org"])
    assert referrer == [
        "Your referral HPS-2025-0117: allocated to an early help team",
        "Your referral HPS-2025-0117: early help case opened or joined in a locality",
    ]
    lead = sorted(m["Subject"] for m in by_recipient["samira.okafor@brent.example.gov.uk"])
    assert lead[0] == "A case has been allocated to you" and lead[1].startswith("Review due on")
    text = " ".join(m.get_payload() for m in messages())
    assert str(case_id) in text
    for personal in ("Amira", "Hassan", "9990000018", "G304200119123", "Craven Park"):
        assert personal not in text

    # Fanning the same events out again (as after a rebuild) e-mails nobody twice.
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE event_journal SET fanned_out = false WHERE family_id = :family"),
            {"family": str(received.family_id)},
        )
    engine.dispose()
    wait_until(lambda: all_fanned_out(database_url, received.family_id))
    assert len(messages()) == 4


class Inbox:
    """An aiosmtpd handler: keeps each message; refuses the next `refuse` with a 451."""

    def __init__(self):
        self.messages = []
        self.refuse = 0
        self.refused = 0

    async def handle_DATA(self, server, session, envelope):
        if self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content)))
        return "250 2.0.0 OK"


@pytest.fixture(scope="module")
def relay_certificates(tmp_path_factory):
    """A CA the hub is told to trust, the relay's certificate from it, and a stranger CA."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    trusted = CertificateAuthority(folder, "council")
    stranger = CertificateAuthority(folder / "stranger", "stranger")
    return trusted, trusted.issue("relay", server=True), stranger


def _inbox(**server_options):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **server_options)
    controller.start()
    inbox.port = controller.port
    return inbox, controller


@pytest.fixture
def smtp_server(relay_certificates):
    """A relay that accepts mail only after STARTTLS, as a council's relay should."""
    _, relay, _ = relay_certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(relay.certfile, relay.keyfile)
    inbox, controller = _inbox(tls_context=context, require_starttls=True)
    yield inbox
    controller.stop()


@pytest.fixture
def plain_smtp_server():
    """A relay that does not offer STARTTLS."""
    inbox, controller = _inbox()
    yield inbox
    controller.stop()


def _errors(database_url) -> list[str]:
    """The last error of every e-mail tried and not sent."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = "SELECT last_error FROM emails WHERE attempts > 0 AND status <> 'sent'"
            return conn.execute(sa.text(query)).scalars().all()
    finally:
        engine.dispose()


@pytest.mark.parametrize("trust", ["none offered", "untrusted certificate"])
def test_no_e_mail_leaves_without_a_trusted_starttls(
    trust, notifications, publish, smtp_server, plain_smtp_server, relay_certificates, database_url
):
    _, _, stranger = relay_certificates
    if trust == "none offered":
        relay, cafile, why = plain_smtp_server, None, "SMTPNotSupportedError: STARTTLS"
    else:
        relay, cafile, why = smtp_server, stranger.cafile, "CERTIFICATE_VERIFY_FAILED"
    notifications(smtp_host="127.0.0.1", smtp_port=relay.port, smtp_cafile=cafile)
    received = referral(reference="HPS-SMTP-2", email="dsl@school.example.org")
    publish(received)
    _case(publish, received, review_in_days=30)
    errors = wait_until(lambda: _errors(database_url), message="the e-mail was never tried")
    assert all(why in error for error in errors), errors
    assert relay.messages == []


def test_e_mail_goes_through_smtp_when_a_host_is_configured(
    notifications, publish, smtp_server, relay_certificates, database_url
):
    trusted, _, _ = relay_certificates
    notifications(smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_cafile=trusted.cafile)
    # The server turns the first two messages away: they are sent again, once.
    smtp_server.refuse = 2
    received = referral(reference="HPS-SMTP-1", email="dsl@school.example.org")
    publish(received)
    _case(publish, received, review_in_days=30)  # no reminder yet
    wait_until(lambda: len(smtp_server.messages) == 3, message="nothing reached the SMTP server")
    recipients = sorted(r[0] for r, _ in smtp_server.messages)
    assert recipients == [
        "dsl@school.example.org",
        "dsl@school.example.org",
        "samira.okafor@brent.example.gov.uk",
    ]
    assert all(m["Message-ID"].endswith("@earlyhelp.example>") for _, m in smtp_server.messages)
    assert len({m["Message-ID"] for _, m in smtp_server.messages}) == 3
    assert smtp_server.refused == 2

    engine = sa.create_engine(database_url)
    try:

        def settled():
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT status, attempts FROM emails")).all()
            return rows if {r.status for r in rows} == {"sent"} else None

        rows = wait_until(settled, message="the sent e-mails were never recorded")
    finally:
        engine.dispose()
    assert len(rows) == 3 and sum(r.attempts for r in rows) == 3 + 2
    assert len(smtp_server.messages) == 3  # and nobody had a message twice
