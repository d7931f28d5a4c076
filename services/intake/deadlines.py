"""The Operation Encompass deadline watch: alerts the front door about notices no school
has acknowledged when their deadline is near.

A background worker of intake. Each pass takes the time from its clock (injected, so
tests decide what "now" is), finds the schools' notices still unacknowledged within
the calendar's alert lead of their deadline, and appends one
`earlyhelp.encompass.notice_alerted.v1` to each notice's stream with the pure
decision in `intake.encompass`; the alert reaches the front door's queue
(`GET /v1/encompass-notices`), its e-mail (notifications) and the metrics below.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select

from hub.clock import utc_now
from hub.contracts.codes import EncompassAlertReason
from hub.privacy import describe_error
from hub.service import Runtime, UnitOfWork
from hub.store import PendingEvent
from intake import encompass
from intake.projections import encompass_notices
from intake.settings import IntakeSettings

log = logging.getLogger(__name__)

ALERTS = Counter(
    "earlyhelp_encompass_alerts_total",
    "Operation Encompass notices unacknowledged close to their deadline, alerted to the front door",
)
NEEDING_ATTENTION = Gauge(
    "earlyhelp_encompass_notices_needing_attention",
    "Operation Encompass notices in the front door's queue, by reason",
    ["reason"],
)


def raise_due_alerts(runtime: Runtime, calendar: encompass.SchoolCalendar, now: datetime) -> int:
    """Alert on every school's notice unacknowledged within the alert lead of its
    deadline; returns how many were alerted now."""
    notices = encompass_notices.c
    # Most passes find nothing due: a read says so without taking the writer's lock.
    with runtime.db.read() as conn:
        due = (
            conn.execute(
                select(notices.notice_id)
                .where(
                    notices.school_id.is_not(None),
                    notices.acknowledged_at.is_(None),
                    notices.alert_reason.is_(None),
                    notices.due_by <= now + calendar.alert_lead,
                )
                .order_by(notices.due_by, notices.notice_id)
            )
            .scalars()
            .all()
        )
    alerted = 0
    if due:
        with runtime.db.write() as conn:
            uow = UnitOfWork(runtime, conn)
            for notice_id in due:
                stream = encompass.stream_id(notice_id)
                # The stream decides: a notice acknowledged or alerted since the read is left.
                current = encompass.replay(r.decode() for r in uow.read_stream(stream))
                if current is None:
                    continue
                events = encompass.alert_if_due(current, now, calendar.alert_lead)
                if events:
                    pending = [PendingEvent(e, occurred_at=now) for e in events]
                    uow.append(stream, current.version, pending)
                    alerted += len(events)
    with runtime.db.read() as conn:
        waiting = dict(
            conn.execute(
                select(notices.alert_reason, func.count())
                .where(notices.acknowledged_at.is_(None), notices.alert_reason.is_not(None))
                .group_by(notices.alert_reason)
            ).all()
        )
    for reason in EncompassAlertReason:
        NEEDING_ATTENTION.labels(reason=reason.value).set(waiting.get(reason.value, 0))
    if alerted:
        ALERTS.inc(alerted)
        if runtime.relay is not None:
            runtime.relay.notify()
    return alerted


class EncompassDeadlineWatch:
    """Intake's background worker: one pass every `encompass_check_seconds`."""

    def __init__(
        self,
        runtime: Runtime,
        settings: IntakeSettings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prepare(self) -> None:
        # A calendar that does not load stops the service before it serves.
        self._calendar = self._settings.school_calendar()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="encompass-deadlines", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raise_due_alerts(self._runtime, self._calendar, self._clock())
            except Exception as exc:
                # The next pass tries again; a notice is never skipped, only alerted late.
                # The error reduced to what is safe to log: no traceback of bound values.
                log.error("encompass deadline watch pass failed: %s", describe_error(exc))
            self._stop.wait(self._settings.encompass_check_seconds)
