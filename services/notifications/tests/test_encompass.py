"""Operation Encompass notices reach each child's school, by its subscription and by e-mail
to its designated safeguarding lead, with only that child's allow-listed details; and the
front door is e-mailed about notices it must act on. Real broker, database, webhook
receiver process and Maildir."""

import json
import mailbox
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import sqlalchemy as sa

from hub.contracts.intake import (
    EncompassNoticeAlerted,
    EncompassNoticeIssued,
    ReferralReceived,
)
from hub.encompass_links import acknowledgement_link, link_key
from notifications.tables import emails

from .conftest import POLICE, SCHOOL, all_fanned_out, as_, referral, subscribe, wait_until

ST_MARYS = "st-marys-primary"
FRONT_DOOR = "front.door@brent.example.gov.uk"
HARLESDEN_DSL = "dsl@harlesden-primary.example.org"
ST_MARYS_DSL = "safeguarding@st-marys-primary.example.org"
# What the policy lets a school have of its pupil's notice, and nothing else.
NOTICE_FIELDS = {
    "notice_id",
    "school_id",
    "school_urn",
    "police_reference",
    "incident_at",
    "location_type",
    "domestic_abuse",
    "due_by",
    "child",
}
CHILD_FIELDS = {"given_name", "family_name", "date_of_birth", "present", "voice_of_child"}


def _police_referral() -> ReferralReceived:
    return referral(referrer=POLICE, referrer_type="police", reference="CAD-4471-07MAR25")


def _notices(received: ReferralReceived, *schools: str | None) -> list[EncompassNoticeIssued]:
    """One notice per child of the referral, the nth child's to the nth school."""
    example = EncompassNoticeIssued.examples()[0]
    now = datetime.now(UTC)
    notices = []
    for child, school in zip(received.children, schools, strict=False):
        data = example | {
            "referral_id": str(received.referral_id),
            "family_id": str(received.family_id),
            "notice_id": str(uuid4()),
            "child": example["child"]
            | {
                "person_id": str(child.person_id),
                "given_name": child.given_name,
                "family_name": child.family_name,
                "date_of_birth": child.date_of_birth.isoformat(),
                "voice_of_child": f"{child.given_name} heard shouting from upstairs.",
            },
            "school_id": school,
            "school_urn": {SCHOOL: "101234", ST_MARYS: "101567"}.get(school),
            "school_known_from": "notification" if school else None,
            "issued_at": now.isoformat(),
            "due_by": (now + timedelta(hours=12)).isoformat(),
        }
        notices.append(EncompassNoticeIssued.model_validate(data))
    return notices


def _messages(tmp_path):
    box = tmp_path / "mailbox"
    return list(mailbox.Maildir(box, create=False)) if (box / "cur").exists() else []


def _to(tmp_path, recipient):
    return [m for m in _messages(tmp_path) if m["To"] == recipient]


def test_two_children_at_two_schools_each_school_gets_only_its_own_pupil(
    notifications, publish, receiver, tmp_path, database_url
):
    app = notifications(front_door_email=FRONT_DOOR)
    # Harlesden is a partner system with a webhook; St Mary's has no system on the hub
    # (it is only in config/schools.yaml): its safeguarding lead is e-mailed.
    harlesden = receiver()
    subscribe(app, SCHOOL, ["earlyhelp.encompass.*"], harlesden)
    # The notifying force may not even subscribe to the notices to schools.
    refused = app.post(
        "/v1/subscriptions",
        json={"event_types": ["earlyhelp.encompass.*"], "delivery": {"type": "partner_topic"}},
        headers=as_(app, POLICE),
    )
    assert refused.status_code == 422, refused.text
    received = _police_referral()
    amira, yusuf = _notices(received, SCHOOL, ST_MARYS)
    for event in (received, amira, yusuf):
        publish(event)

    wait_until(harlesden.accepted, timeout_s=90)
    wait_until(lambda: all_fanned_out(database_url, received.family_id), timeout_s=90)
    [body] = [r["event"] for r in harlesden.accepted()]
    assert body["type"] == "earlyhelp.encompass.notice_issued.v1"
    assert body["dataclassification"] == "restricted"
    assert body["datacategory"] == "operation-encompass"
    assert set(body["data"]) == NOTICE_FIELDS
    assert set(body["data"]["child"]) == CHILD_FIELDS
    assert body["data"]["notice_id"] == str(amira.notice_id)
    assert body["data"]["child"]["given_name"] == "Amira"
    for other in ("Yusuf", "Craven Park", "NW10 8SE", "Leila", "9990000018"):
        assert other not in json.dumps(body)

    # Each designated safeguarding lead is e-mailed their own pupil's notice too.
    wait_until(lambda: _to(tmp_path, HARLESDEN_DSL) and _to(tmp_path, ST_MARYS_DSL), timeout_s=90)
    [harlesden_mail] = _to(tmp_path, HARLESDEN_DSL)
    [st_marys_mail] = _to(tmp_path, ST_MARYS_DSL)
    assert "Amira Hassan" in harlesden_mail.get_payload()
    assert "Yusuf" not in harlesden_mail.get_payload()
    assert "Yusuf Hassan" in st_marys_mail.get_payload()
    for other in ("Amira", "Craven Park", "Leila"):
        assert other not in st_marys_mail.get_payload()
    assert str(amira.notice_id) in harlesden_mail.get_payload()
    # The safeguarding lead acknowledges by the e-mail's signed link (issue 22): on the
    # embedded default its key is generated; PostgreSQL here has none configured, so the
    # e-mail gives the API call instead.
    text = harlesden_mail.get_payload(decode=True).decode()
    key = link_key(app.settings)
    if key is None:
        assert f"POST /v1/encompass-notices/{amira.notice_id}/acknowledgement" in text
    else:
        link = acknowledgement_link(app.own.intake_public_url, key, amira.notice_id, SCHOOL)
        assert link in text and "/acknowledgement-link?school=" in link

    # Each send is on the family's disclosure record, under the statutory duty (an
    # e-mail's row is written just after the mail server took it).
    def disclosed():
        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT partner_id, channel, basis FROM disclosures"
                        " WHERE family_id = :family ORDER BY partner_id, channel"
                    ),
                    {"family": str(received.family_id)},
                ).all()
        finally:
            engine.dispose()
        return [tuple(row) for row in rows]

    wait_until(lambda: len(disclosed()) == 3, timeout_s=90)
    assert disclosed() == [
        (SCHOOL, "email", "statutory_duty"),
        (SCHOOL, "webhook", "statutory_duty"),
        (ST_MARYS, "email", "statutory_duty"),
    ]


def _sent(database_url, recipient):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(emails.c.sent_at).where(
                    emails.c.recipient == recipient, emails.c.status == "sent"
                )
            ).all()
    finally:
        engine.dispose()


def test_a_school_whose_webhook_is_down_is_e_mailed_in_time_and_the_front_door_alerted(
    notifications, publish, receiver, tmp_path, database_url
):
    app = notifications(front_door_email=FRONT_DOOR)
    harlesden = receiver()
    subscribe(app, SCHOOL, ["earlyhelp.encompass.*"], harlesden)
    harlesden.down()
    received = _police_referral()
    # Amira's school is known; no school is known for Yusuf.
    amira, yusuf = _notices(received, SCHOOL, None)
    no_school = EncompassNoticeAlerted.model_validate(
        EncompassNoticeAlerted.examples()[0]
        | {
            "referral_id": str(received.referral_id),
            "family_id": str(received.family_id),
            "notice_id": str(yusuf.notice_id),
            "reason": "no_school",
            "school_id": None,
            "due_by": yusuf.due_by.isoformat(),
            "alerted_at": yusuf.issued_at.isoformat(),
        }
    )
    unacknowledged = EncompassNoticeAlerted.model_validate(
        no_school.model_dump(mode="json")
        | {"notice_id": str(amira.notice_id), "reason": "unacknowledged", "school_id": SCHOOL}
    )
    for event in (received, amira, yusuf, no_school, unacknowledged):
        publish(event)

    [(sent_at,)] = wait_until(lambda: _sent(database_url, HARLESDEN_DSL), timeout_s=90)
    assert sent_at < amira.due_by
    assert harlesden.accepted() == []  # the webhook is still down: e-mail did not wait for it
    [dsl_mail] = _to(tmp_path, HARLESDEN_DSL)
    assert "Amira Hassan" in dsl_mail.get_payload()

    front_door = wait_until(
        lambda: len(_to(tmp_path, FRONT_DOOR)) == 2 and _to(tmp_path, FRONT_DOOR), timeout_s=90
    )
    subjects = sorted(m["Subject"] for m in front_door)
    assert subjects == [
        "Operation Encompass: no school known for the child",
        "Operation Encompass: the school has not acknowledged it close to its deadline",
    ]
    text = " ".join(m.get_payload() for m in front_door)
    assert str(received.referral_id) in text and str(yusuf.notice_id) in text
    for personal in ("Amira", "Yusuf", "Hassan", "2015-06-12"):
        assert personal not in text
    # No school, no school's e-mail: nobody but the front door hears of Yusuf's notice.
    assert [m["To"] for m in _messages(tmp_path)].count(ST_MARYS_DSL) == 0
