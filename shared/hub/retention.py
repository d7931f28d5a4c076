"""The retention schedule (config/retention.yaml) and the disposal every service shares.

The schedule names a period for each kind of record the hub keeps; every period is
an explicit setting of the file, none is built in. `earlyhelp retention` runs
`dispose_expired` in each service's own database (idempotency records and audit
rows past their period), and asks case plan, which owns the decision about case
records, what falls due (`case_records_due`). Case records themselves are only
reported until erasure exists (issue 16 item 3).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, and_, delete, not_

from hub.contracts.dates import authority_date
from hub.tables import audit_log, idempotency_keys
from hub.yaml_files import load_yaml

# Kinds of record, as the log lines and the metric's `kind` label name them.
IDEMPOTENCY_RECORDS = "idempotency_records"
AUDIT_ROWS = "audit_rows"
CASE_RECORDS = "case_records"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseRecordsPeriod(_Strict):
    years_after_closure: int = Field(
        ge=1, le=100, description="Years after the family's last case closed."
    )
    until_age: int = Field(
        ge=18, le=100, description="Or until the youngest child reaches this age, if later."
    )


class DaysPeriod(_Strict):
    days: int = Field(ge=1, le=36_500, description="Days after the record was written.")


class GovernedElsewhere(_Strict):
    governed_by: Literal["EARLYHELP_NOTIFICATIONS_RETENTION_DAYS"]


class KafkaRetention(_Strict):
    kafka_retention_days: int = Field(
        ge=1, le=36_500, description="The DLQ topics' retention.ms, set on the broker."
    )


class RetentionSchedule(_Strict):
    """How long each kind of record is kept: the authority's decision, in one file."""

    case_records: CaseRecordsPeriod
    idempotency_records: DaysPeriod
    audit_rows: DaysPeriod
    notifications_delivery_data: GovernedElsewhere
    dead_letter_topics: KafkaRetention


@lru_cache(maxsize=4)
def cached_schedule(path: Path, modified_ns: int) -> RetentionSchedule:
    return load_schedule(path)


def current_schedule(path: Path) -> RetentionSchedule:
    """The schedule in `path`, read again when the file changes."""
    return cached_schedule(path, path.stat().st_mtime_ns)


def load_schedule(path: Path) -> RetentionSchedule:
    """The schedule in `path`; a missing period or an unknown key is refused by name."""
    with open(path, encoding="utf-8") as handle:
        return RetentionSchedule.model_validate(load_yaml(handle.read()) or {})


# --- dates (pure) ---------------------------------------------------------------------


def add_years(day: date, years: int) -> date:
    """The same day `years` later; 29 February becomes 1 March in a common year.

    1 March, not 28 February: for a child born on a leap day the later reading of
    "their birthday" keeps the record a day longer, never a day too short.
    """
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a common year
        return date(day.year + years, 3, 1)


def case_records_due(
    schedule: RetentionSchedule,
    closures: Iterable[date | None],
    births: Iterable[date | None],
) -> date | None:
    """The day a family's case records may be disposed of; None while any case is open.

    `closures` has one entry per case, None for one still open; `births` one per child
    (None for a child whose date of birth is not known, e.g. unborn: then only the
    years after closure count for that child). The later of the two rules wins.
    """
    closed = list(closures)
    if not closed or any(day is None for day in closed):
        return None
    period = schedule.case_records
    due = add_years(max(d for d in closed if d is not None), period.years_after_closure)
    for born in births:
        if born is not None:
            due = max(due, add_years(born, period.until_age))
    return due


@dataclass(frozen=True)
class CaseRecordsDecision:
    """What the service that decides when case records fall due (case plan) offers the job.

    `falling_due(conn, schedule, today)` gives (families due and not held, held families),
    each with a `family_id` and `due`; `held_resources(conn, schedule)` the ids whose
    audit rows are kept.
    """

    falling_due: Callable[[Connection, RetentionSchedule, date], tuple[list, list]]
    held_resources: Callable[[Connection, RetentionSchedule], set[str]]


# --- disposal in a service's own database -----------------------------------------------


@dataclass(frozen=True)
class Disposed:
    idempotency_records: int
    audit_rows: int

    def by_kind(self) -> dict[str, int]:
        return {IDEMPOTENCY_RECORDS: self.idempotency_records, AUDIT_ROWS: self.audit_rows}


def dispose_expired(
    conn: Connection,
    schedule: RetentionSchedule,
    now: datetime,
    held_resources: Collection[str] = (),
) -> Disposed:
    """Delete idempotency records and audit rows older than their periods.

    `held_resources` are ids (a held family's, its cases' and referrals') whose audit
    rows are kept whatever their age: the record of who read a held family stays.
    """
    idempotency_cutoff = now - timedelta(days=schedule.idempotency_records.days)
    audit_cutoff = now - timedelta(days=schedule.audit_rows.days)
    idempotency = conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < idempotency_cutoff)
    ).rowcount
    expired = audit_log.c.at < audit_cutoff
    if held_resources:
        expired = and_(expired, not_(audit_log.c.resource_id.in_(sorted(held_resources))))
    audit = conn.execute(delete(audit_log).where(expired)).rowcount
    return Disposed(idempotency_records=idempotency, audit_rows=audit)


# --- one run of the job (`earlyhelp retention`) -------------------------------------------


@dataclass(frozen=True)
class ServiceRun:
    """What one service's run disposed of and found due; ids only, never a personal value."""

    service: str
    disposed: Disposed
    due_family_ids: tuple[str, ...] = ()
    held_family_ids: tuple[str, ...] = ()
    reports_case_records: bool = False


def run_for_service(
    service: str,
    conn: Connection,
    schedule: RetentionSchedule,
    now: datetime,
    decision: CaseRecordsDecision | None,
) -> ServiceRun:
    """Dispose of what the service may today, and (case plan) report what falls due.

    Case records are reported, not disposed of: that waits for erasure (issue 16 item 3),
    which will dispose of `due_family_ids` by event so every service erases its own copy.
    """
    held: set[str] = set()
    due_ids: tuple[str, ...] = ()
    held_ids: tuple[str, ...] = ()
    if decision is not None:
        due, kept = decision.falling_due(conn, schedule, authority_date(now))
        due_ids = tuple(family.family_id for family in due)
        held_ids = tuple(family.family_id for family, _hold in kept)
        held = decision.held_resources(conn, schedule)
    disposed = dispose_expired(conn, schedule, now, held)
    return ServiceRun(service, disposed, due_ids, held_ids, decision is not None)


LAST_SUCCESS = "earlyhelp_retention_last_success_timestamp_seconds"
DISPOSED = "earlyhelp_retention_disposed_records"
DUE = "earlyhelp_retention_case_records_due"
PUSH_JOB = "earlyhelp-retention"


def metrics_of(runs: Iterable[ServiceRun], finished_at: datetime):
    """The job's metrics, one registry: a job that exits cannot be scraped, so it pushes it.

    Labels are the service and the kind of record, never an id.
    """
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    last_success = Gauge(
        LAST_SUCCESS,
        "Unix time at which the last retention run of the service finished without error.",
        ["service"],
        registry=registry,
    )
    disposed = Gauge(
        DISPOSED,
        "Records the last retention run disposed of, by kind.",
        ["service", "kind"],
        registry=registry,
    )
    due = Gauge(
        DUE,
        "Families whose case records have reached their date and are not held "
        "(reported, not disposed of, until erasure exists).",
        ["service"],
        registry=registry,
    )
    for run in runs:
        last_success.labels(run.service).set(finished_at.timestamp())
        for kind, count in run.disposed.by_kind().items():
            disposed.labels(run.service, kind).set(count)
        if run.reports_case_records:
            due.labels(run.service).set(len(run.due_family_ids))
    return registry


def publish_metrics(registry, pushgateway: str, textfile: Path | None, service: str | None) -> None:
    """Push to the Pushgateway (grouping key job, and service when run for one), and/or
    write node_exporter's textfile: the two ways docs/operations.md "Retention job" names."""
    from prometheus_client import push_to_gateway, write_to_textfile

    if pushgateway:
        grouping = {"service": service} if service else {}
        push_to_gateway(pushgateway, job=PUSH_JOB, registry=registry, grouping_key=grouping)
    if textfile is not None:
        write_to_textfile(str(textfile), registry)
