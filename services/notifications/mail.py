"""E-mail to people: referrers hear what became of their referral, lead professionals of
their cases and of reviews falling due, schools' designated safeguarding leads of their
pupils' Operation Encompass notices, and the front door of notices it must act on.

E-mails are planned in the same transaction as fan-out, one row per message and
recipient (so an event never e-mails anyone twice), then sent by the delivery
worker through SMTP, or into a Maildir when no SMTP host is configured. What a
referrer's e-mail says comes from the policy's share for the referrer, so it
never holds more than the referrer's webhook would: no child's name, only the
status and the referrer's own reference.
"""

from __future__ import annotations

import hashlib
import json
import mailbox
import smtplib
import ssl
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Connection, select

from hub.contracts.allocation import CaseAllocated
from hub.contracts.codes import (
    EncompassAlertReason,
    IncidentLocation,
    PartnerOrganisationType,
    TriageRoute,
)
from hub.contracts.intake import EncompassNoticeAlerted, EncompassNoticeIssued, ReferralTriaged
from hub.encompass_links import acknowledgement_link
from hub.schools import SchoolRegistry
from hub.sql import insert_if_absent
from notifications.policy import Partner, Relation, SharingPolicy, share
from notifications.settings import NotificationsSettings
from notifications.tables import case_reviews, emails, referral_facts

if TYPE_CHECKING:
    from notifications.fanout import JournalEntry

_TRIAGED = """\
Your referral {reference} has been looked at by the early help front door.

Decision: {route}.
{next_step}
You can follow this referral in your system through the hub (referral {referral_id}).

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_ALLOCATED_TO_REFERRER = """\
The early help case opened from your referral {reference} has been allocated.

Team: {team}
Lead professional: {lead_name}, {lead_role}

The lead professional is now the family's single point of contact.

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_ALLOCATED_TO_LEAD = """\
Dear {lead_name},

You are now the lead professional for early help case {case_id} ({locality}).
Sign in to the hub to see the family and plan the assessment.

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_REVIEW_DUE = """\
Dear {lead_name},

The review of early help case {case_id} is due on {review_date}.
Sign in to the hub to prepare it with the family and the agencies around them.

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_ENCOMPASS_NOTICE = """\
Operation Encompass notice {police_reference}

For the designated safeguarding lead of your school. Police attended a domestic
abuse incident that {child_name} (born {date_of_birth}) lives with or was
present at.

When: {incident_at}
Where: {location}
Was the child present: {present}
The voice of the child: {voice}

Please read this before school starts at {due_by}, so that the school can support
{child_name} today. Share it only with staff who need to know.

{acknowledge}

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_FRONT_DOOR_ALERT = """\
Operation Encompass notice {notice_id} needs the front door.

{why}
The school must be told before {due_by}.
Open referral {referral_id} in the hub for the child, and the queue of notices
(GET /v1/encompass-notices on intake) for every notice waiting.

This message was sent automatically by the Early Help Hub; please do not reply.
"""
_ALERT_REASONS = {
    EncompassAlertReason.NO_SCHOOL: "No school is known for the child: find it and tell its"
    " designated safeguarding lead.",
    EncompassAlertReason.UNACKNOWLEDGED: "The school ({school}) has not acknowledged it and"
    " its deadline is near: telephone the designated safeguarding lead.",
}
_NEXT_STEP = {
    TriageRoute.EARLY_HELP: "A locality early help team will take the case; you will hear "
    "when it is allocated.",
    TriageRoute.SOCIAL_CARE: "The referral has been passed to children's social care.",
    TriageRoute.SIGNPOST_UNIVERSAL: "The family has been signposted to universal services.",
    TriageRoute.NO_FURTHER_ACTION: "No further action will be taken by early help.",
}


def _plan(
    conn: Connection,
    key: str,
    recipient: str | None,
    template: str,
    subject: str,
    body: str,
    now: datetime,
    disclosure: dict[str, Any] | None = None,
) -> None:
    if not recipient:
        return
    insert_if_absent(
        conn,
        emails,
        {
            "message_key": key,
            "recipient": recipient,
            "template": template,
            "subject": subject,
            "body": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "disclosure": json.dumps(disclosure) if disclosure else None,
        },
    )


def _referrers(conn: Connection, **where: str) -> list[Any]:
    query = select(referral_facts).where(referral_facts.c.referrer_email.is_not(None))
    for column, value in where.items():
        query = query.where(referral_facts.c[column] == value)
    return conn.execute(query.order_by(referral_facts.c.referral_id)).all()


def _referrer_view(
    policy: SharingPolicy, referral: Any, entry: JournalEntry
) -> dict[str, Any] | None:
    """What the policy lets the referrer see of this event (the all-partner referrer rules)."""
    shared = share(
        policy,
        Partner(referral.referrer_id or "individual", None),
        entry.event_type,
        entry.data,
        Relation(referrer=True, partner_reference=referral.partner_reference),
    )
    return shared.data if shared else None


@dataclass(frozen=True)
class EncompassMail:
    """Who Operation Encompass e-mails go to: each school's designated safeguarding lead
    (config/schools.yaml), and the front door for notices it must act on; and how a
    school acknowledges (a signed link to intake when a link key is set)."""

    schools: SchoolRegistry
    front_door_email: str | None = None
    link_key: bytes | None = None
    intake_public_url: str = "http://127.0.0.1:8001"

    def how_to_acknowledge(self, notice_id: str, school_id: str) -> str:
        if self.link_key is None:
            return (
                "Acknowledge it through your school's connection to the hub (notice"
                f" {notice_id}):\nPOST /v1/encompass-notices/{notice_id}/acknowledgement"
            )
        link = acknowledgement_link(
            self.intake_public_url, self.link_key, UUID(notice_id), school_id
        )
        # Short lines: a line over 76 characters makes the message quoted-printable,
        # which breaks the notice id across lines for anyone reading the raw text.
        return (
            f"Acknowledge notice {notice_id}\nwhen you have read it, so that the front door"
            f" knows: open this\nlink, then press the button.\n{link}"
        )


def _when(value: str) -> str:
    """An ISO timestamp from the journal, as the e-mail shows it."""
    return datetime.fromisoformat(value).strftime("%A %d %B %Y, %H:%M UTC")


def _plan_encompass(
    conn: Connection,
    policy: SharingPolicy,
    entry: JournalEntry,
    encompass: EncompassMail,
    now: datetime,
) -> None:
    data = entry.data
    if entry.event_type == EncompassNoticeAlerted.event_type:
        reason = EncompassAlertReason(data["reason"])
        _plan(
            conn,
            f"{entry.event_id}/encompass-alert",
            encompass.front_door_email,
            "encompass-alert",
            f"Operation Encompass: {reason.label.split(':')[0].lower()}",
            _FRONT_DOOR_ALERT.format(
                notice_id=data["notice_id"],
                why=_ALERT_REASONS[reason].format(school=data.get("school_id")),
                due_by=_when(data["due_by"]),
                referral_id=data["referral_id"],
            ),
            now,
        )
        return
    school = encompass.schools.get(data.get("school_id") or "")
    if school is None:
        return  # no school: the front door hears of it from the notice's alert
    # What the policy lets this school have of the notice, exactly as its webhook would.
    shared = share(
        policy,
        Partner(school.school_id, PartnerOrganisationType.SCHOOL),
        entry.event_type,
        data,
        Relation(notified_school=True, basis="statutory_duty"),
    )
    if shared is None:
        return
    view, child = shared.data, shared.data.get("child", {})
    name = " ".join(part for part in (child.get("given_name"), child.get("family_name")) if part)
    _plan(
        conn,
        f"{entry.event_id}/encompass-notice",
        school.safeguarding_lead_email,
        "encompass-notice",
        f"Operation Encompass notice {view.get('police_reference', '')}: please read before"
        " school starts",
        _ENCOMPASS_NOTICE.format(
            police_reference=view.get("police_reference", ""),
            child_name=name or "a pupil",
            date_of_birth=child.get("date_of_birth", "not given"),
            incident_at=_when(view["incident_at"]) if "incident_at" in view else "not given",
            location=(
                IncidentLocation(view["location_type"]).label
                if "location_type" in view
                else "not given"
            ),
            present="yes" if child.get("present") else "no",
            voice=child.get("voice_of_child") or "not recorded",
            due_by=_when(view["due_by"]) if "due_by" in view else "the next school day",
            acknowledge=encompass.how_to_acknowledge(view.get("notice_id", ""), school.school_id),
        ),
        now,
        disclosure={
            "family_id": entry.family_id,
            "partner_id": school.school_id,
            "event_id": entry.event_id,
            "event_type": entry.event_type,
            "fields": json.dumps(shared.restricted_paths),
            "rules": ",".join(shared.restricted_rules)[:500],
            "basis": "statutory_duty",
        }
        if shared.restricted_paths
        else None,
    )


def plan_for_event(
    conn: Connection,
    policy: SharingPolicy,
    entry: JournalEntry,
    now: datetime,
    encompass: EncompassMail | None = None,
) -> None:
    if entry.event_type in _ENCOMPASS_EVENT_TYPES:
        if encompass is not None:
            _plan_encompass(conn, policy, entry, encompass, now)
    elif entry.event_type == ReferralTriaged.event_type:
        for referral in _referrers(conn, referral_id=entry.data["referral_id"]):
            view = _referrer_view(policy, referral, entry)
            if view is None:
                continue
            route = TriageRoute(view["route"])
            reference = view.get("partner_reference") or "without a reference"
            _plan(
                conn,
                f"{entry.event_id}/referral-triaged",
                referral.referrer_email,
                "referral-triaged",
                f"Your referral {reference}: {route.label.lower()}",
                _TRIAGED.format(
                    reference=reference,
                    route=route.label,
                    next_step=_NEXT_STEP[route],
                    referral_id=view["referral_id"],
                ),
                now,
            )
    elif entry.event_type == CaseAllocated.event_type:
        for referral in _referrers(conn, case_id=entry.data["case_id"]):
            view = _referrer_view(policy, referral, entry)
            if view is None:
                continue
            lead = view.get("lead_professional", {})
            reference = view.get("partner_reference") or "without a reference"
            _plan(
                conn,
                f"{entry.event_id}/case-allocated-referrer",
                referral.referrer_email,
                "case-allocated-referrer",
                f"Your referral {reference}: allocated to an early help team",
                _ALLOCATED_TO_REFERRER.format(
                    reference=reference,
                    team=lead.get("team_name", view.get("team_id")),
                    lead_name=lead.get("name", "to be confirmed"),
                    lead_role=lead.get("role", ""),
                ),
                now,
            )
        lead = entry.data["lead_professional"]
        _plan(
            conn,
            f"{entry.event_id}/case-allocated-lead",
            lead.get("email"),
            "case-allocated-lead",
            "A case has been allocated to you",
            _ALLOCATED_TO_LEAD.format(
                lead_name=lead["name"],
                case_id=entry.data["case_id"],
                locality=entry.data["locality"],
            ),
            now,
        )


_ENCOMPASS_EVENT_TYPES = (EncompassNoticeIssued.event_type, EncompassNoticeAlerted.event_type)


def plan_review_reminders(conn: Connection, today: date, days_ahead: int, now: datetime) -> None:
    """Remind each lead professional of a review due within `days_ahead` days (once a date)."""
    due = conn.execute(
        select(case_reviews).where(
            case_reviews.c.review_date.is_not(None),
            case_reviews.c.review_date <= today + timedelta(days=days_ahead),
            case_reviews.c.review_date >= today,
            case_reviews.c.lead_email.is_not(None),
        )
    ).all()
    for review in due:
        _plan(
            conn,
            f"review-due/{review.case_id}/{review.review_date.isoformat()}",
            review.lead_email,
            "review-due",
            f"Review due on {review.review_date:%d %B %Y}",
            _REVIEW_DUE.format(
                lead_name=review.lead_name or "colleague",
                case_id=review.case_id,
                review_date=f"{review.review_date:%d %B %Y}",
            ),
            now,
        )


class Mailer:
    """Sends one e-mail through SMTP, or drops it into the Maildir on the embedded default."""

    def __init__(self, settings: NotificationsSettings, mailbox_dir: Path) -> None:
        self._settings = settings
        self._mailbox_dir = mailbox_dir

    def message(self, key: str, recipient: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = recipient
        message["Subject"] = subject
        # Stable per message and recipient, so a resend after a crash is recognisable.
        digest = hashlib.sha256(f"{key}/{recipient}".encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}@earlyhelp.example>"
        message.set_content(body)
        return message

    def send(self, message: EmailMessage) -> None:
        settings = self._settings
        if not settings.smtp_host:
            # Maildir creates its cur/new/tmp only when it creates the folder itself.
            self._mailbox_dir.parent.mkdir(parents=True, exist_ok=True)
            mailbox.Maildir(self._mailbox_dir, create=True).add(message)
            return
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.smtp_starttls:
                # smtplib's own default context checks no certificate: anyone on the path
                # could read the mail. A relay without STARTTLS raises here: nothing is sent.
                smtp.starttls(context=ssl.create_default_context(cafile=settings.smtp_cafile))
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_login_password())
            smtp.send_message(message)
