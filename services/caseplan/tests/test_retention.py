"""The retention schedule executed: disposal in the database, the nightly command, legal holds.

Records are written straight into case plan's tables with dates long past, so that
no test waits on a clock: the schedule's periods are counted from those dates.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import sqlalchemy as sa

from caseplan.projections import cases, family_referrals
from caseplan.service import definition
from caseplan.tables import legal_holds
from hub.migrations import upgrade
from hub.retention import load_schedule, run_for_service
from hub.tables import audit_log, idempotency_keys
from hub.testing import bearer
from tests.harness import read_table

ROOT = Path(__file__).resolve().parents[3]
SCHEDULE = load_schedule(ROOT / "config" / "retention.yaml")
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)
LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)
IG = "information-governance-officer"


def _family(conn, *, closed_at, born, held=False) -> dict:
    """A family with one case and one referral; closed at `closed_at`, one child `born`."""
    ids = {"family_id": str(uuid4()), "case_id": str(uuid4()), "referral_id": str(uuid4())}
    conn.execute(
        sa.insert(cases),
        {
            "case_id": ids["case_id"],
            "family_id": ids["family_id"],
            "status": "closed" if closed_at else "open",
            "episode": 1,
            "re_referral": False,
            "needs_count": 0,
            "reviews": 0,
            "closed_at": closed_at,
            "detail": "{}",
            "updated_at": LONG_AGO,
        },
    )
    conn.execute(
        sa.insert(family_referrals),
        {
            "referral_id": ids["referral_id"],
            "family_id": ids["family_id"],
            "received_at": LONG_AGO,
            "referral_source": "school",
            "children": json.dumps([{"person_id": str(uuid4()), "date_of_birth": born}]),
            "triaged_at": LONG_AGO,
            "case_id": ids["case_id"],
        },
    )
    if held:
        conn.execute(
            sa.insert(legal_holds),
            {
                "family_id": ids["family_id"],
                "reason": "litigation ref LS-1",
                "placed_by": IG,
                "placed_at": LONG_AGO,
            },
        )
    return ids


def _audit(conn, at, resource_id, resource_type="case") -> None:
    conn.execute(
        sa.insert(audit_log),
        {
            "at": at,
            "actor": "someone",
            "actor_kind": "staff",
            "action": "read",
            "resource_type": resource_type,
            "resource_id": resource_id,
        },
    )


def _idempotency(conn, key, created_at) -> None:
    conn.execute(
        sa.insert(idempotency_keys),
        {
            "principal": "someone",
            "idempotency_key": key,
            "request_fingerprint": "f" * 64,
            "status_code": 201,
            "response_body": "{}",
            "response_headers": "{}",
            "created_at": created_at,
        },
    )


def _records(database_url, now=NOW) -> dict:
    """Due, held, open and recent families, with audit rows and idempotency records,
    dated relative to `now` (the command, run as a process, reads the real clock)."""
    upgrade(definition.migrations, database_url)
    engine = sa.create_engine(database_url, hide_parameters=True)
    with engine.begin() as conn:
        records = {
            "due": _family(conn, closed_at=LONG_AGO, born="1995-02-01"),
            "held": _family(conn, closed_at=LONG_AGO, born="1995-02-01", held=True),
            "open": _family(conn, closed_at=None, born="1990-01-01"),
            # Closed long ago, but the child is only 5.
            "young": _family(conn, closed_at=LONG_AGO, born=f"{now.year - 5}-06-12"),
        }
        _idempotency(conn, "old", now - timedelta(days=31))
        _idempotency(conn, "fresh", now - timedelta(days=29))
        old = now - timedelta(days=2191)
        _audit(conn, old, records["due"]["case_id"])
        _audit(conn, old, records["held"]["case_id"])
        _audit(conn, old, records["held"]["family_id"], "family")
        _audit(conn, now - timedelta(days=2189), records["due"]["case_id"])
    engine.dispose()
    return records


def test_one_run_disposes_of_what_is_past_its_period_and_keeps_the_rest(database_url):
    records = _records(database_url)
    engine = sa.create_engine(database_url, hide_parameters=True)
    with engine.begin() as conn:
        run = run_for_service("caseplan", conn, SCHEDULE, NOW, definition.case_records)
    engine.dispose()

    assert run.disposed.by_kind() == {"idempotency_records": 1, "audit_rows": 1}
    assert [row["idempotency_key"] for row in read_table(database_url, "idempotency_keys")] == [
        "fresh"
    ]
    kept = sorted(row["resource_id"] for row in read_table(database_url, "audit_log"))
    assert kept == sorted(
        [records["held"]["case_id"], records["held"]["family_id"], records["due"]["case_id"]]
    )
    # Case records: reported, never deleted (erasure is not built yet); holds are apart.
    assert run.due_family_ids == (records["due"]["family_id"],)
    assert run.held_family_ids == (records["held"]["family_id"],)
    assert len(read_table(database_url, "cases")) == 4


def test_the_nightly_command_against_a_real_database(database_url, tmp_path):
    records = _records(database_url, now=datetime.now(UTC))
    textfile = tmp_path / "retention.prom"
    env = {
        **os.environ,
        "EARLYHELP_DATABASE_URL": database_url,
        "EARLYHELP_RETENTION_TEXTFILE": str(textfile),
        "EARLYHELP_LOG_JSON": "false",
    }
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "retention", "caseplan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "caseplan: disposed idempotency_records=1 audit_rows=1" in done.stdout
    assert f"due  family {records['due']['family_id']}" in done.stdout
    assert f"held family {records['held']['family_id']}" in done.stdout
    assert records["young"]["family_id"] not in done.stdout
    metrics = textfile.read_text()
    assert 'earlyhelp_retention_last_success_timestamp_seconds{service="caseplan"}' in metrics
    assert (
        'earlyhelp_retention_disposed_records{kind="audit_rows",service="caseplan"} 1.0' in metrics
    )
    assert 'earlyhelp_retention_case_records_due{service="caseplan"} 1.0' in metrics
    assert len(read_table(database_url, "idempotency_keys")) == 1


def test_a_failing_run_reports_no_success(tmp_path):
    textfile = tmp_path / "retention.prom"
    env = {
        **os.environ,
        # A database with no tables: the run fails there and must not claim success.
        "EARLYHELP_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "EARLYHELP_RETENTION_TEXTFILE": str(textfile),
    }
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "retention", "caseplan"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "earlyhelp retention caseplan: failed, nothing disposed there" in done.stderr
    assert not textfile.exists()


def test_information_governance_holds_and_lifts_and_sees_what_falls_due(
    service_client, database_url
):
    records = _records(database_url, now=datetime.now(UTC))
    caseplan = service_client(definition)
    ig, head = (
        bearer(caseplan.settings, IG),
        bearer(caseplan.settings, "early-help-service-manager"),
    )
    family = records["due"]["family_id"]

    due = caseplan.get("/v1/retention/due", headers=ig)
    assert due.status_code == 200, due.text
    assert [f["family_id"] for f in due.json()["due"]] == [family]
    assert [f["family_id"] for f in due.json()["held"]] == [records["held"]["family_id"]]

    placed = caseplan.put(
        f"/v1/families/{family}/legal-hold", json={"reason": "inquiry ref 7"}, headers=ig
    )
    assert placed.status_code == 200, placed.text
    assert placed.json()["placed_by"] == IG
    due = caseplan.get("/v1/retention/due", headers=ig).json()
    assert due["due"] == []
    assert {f["family_id"] for f in due["held"]} == {family, records["held"]["family_id"]}

    # A hold may come before case plan holds anything of the family.
    unknown = str(uuid4())
    placed = caseplan.put(
        f"/v1/families/{unknown}/legal-hold", json={"reason": "inquiry ref 8"}, headers=ig
    )
    assert placed.status_code == 200, placed.text
    held = {f["family_id"]: f for f in caseplan.get("/v1/retention/due", headers=ig).json()["held"]}
    assert (held[unknown]["due"], held[unknown]["case_ids"]) == (None, [])
    assert held[unknown]["hold"]["reason"] == "inquiry ref 8"

    assert caseplan.delete(f"/v1/families/{family}/legal-hold", headers=ig).status_code == 204
    assert caseplan.delete(f"/v1/families/{family}/legal-hold", headers=ig).status_code == 404
    due = caseplan.get("/v1/retention/due", headers=ig).json()
    assert [f["family_id"] for f in due["due"]] == [family]

    # Every change on record, under the officer's name.
    actions = [
        (row["action"], row["resource_id"])
        for row in read_table(database_url, "audit_log", actor=IG)
        if row["action"].startswith("legal_hold")
    ]
    assert actions == [
        ("legal_hold_placed", family),
        ("legal_hold_placed", unknown),
        ("legal_hold_lifted", family),
    ]

    # Bad input: named, nothing stored; others may not hold or look.
    bad = caseplan.put(f"/v1/families/{family}/legal-hold", json={"reason": ""}, headers=ig)
    assert bad.status_code == 422 and "reason" in bad.text
    refused = caseplan.put(f"/v1/families/{family}/legal-hold", json={"reason": "x"}, headers=head)
    assert refused.status_code == 403
    assert caseplan.get("/v1/retention/due", headers=head).status_code == 403
    assert read_table(database_url, "legal_holds", family_id=family) == []
