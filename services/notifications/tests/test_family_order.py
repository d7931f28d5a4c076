"""Fan-out restores a family's order across topics by waiting for a known predecessor only.

Each event names the family's event it follows (`hub.family_order`); fan-out holds an event
back while that one has not been consumed, for at most `ordering_max_wait_ms`, and never
holds back an event whose predecessor is known. The journal and inbox are written here as
the projection would write them, on a migrated database; the clock is passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa

from hub.migrations import upgrade
from hub.tables import inbox
from notifications.fanout import fan_out, fan_out_due
from notifications.policy import SharingPolicy
from notifications.service import definition
from notifications.settings import NotificationsSettings
from notifications.tables import JOURNAL_PROJECTION, event_journal, family_facts

CONSUMED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MAX_WAIT = timedelta(seconds=30)


@pytest.fixture(scope="module")
def policy() -> SharingPolicy:
    return SharingPolicy.load(NotificationsSettings().policy_file)


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'notifications.db'}"
    upgrade(definition.migrations, url)
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def consume(
    conn, family: str, occurred_at: datetime, follows: str | None = None, event_id=None
) -> str:
    """Journal an event of a known family, as the projection does when it consumes one."""
    event_id = event_id or str(uuid4())
    conn.execute(
        sa.insert(family_facts).prefix_with("OR IGNORE"),
        {"family_id": family, "consent_withdrawn": False},
    )
    conn.execute(
        sa.insert(event_journal),
        {
            "event_id": event_id,
            "event_type": "earlyhelp.case.closed.v1",
            "family_id": family,
            "occurred_at": occurred_at,
            "journalled_at": CONSUMED,
            "data": "{}",
            "fanned_out": False,
            "follows": follows,
        },
    )
    conn.execute(
        sa.insert(inbox),
        {"projection": JOURNAL_PROJECTION, "event_id": event_id, "handled_at": CONSUMED},
    )
    return event_id


def fanned_out(conn) -> set[str]:
    rows = conn.execute(sa.select(event_journal.c.event_id).where(event_journal.c.fanned_out))
    return {row.event_id for row in rows}


def test_a_later_event_waits_only_for_its_missing_predecessor(engine, policy):
    family, other = str(uuid4()), str(uuid4())
    missing = str(uuid4())
    with engine.begin() as conn:
        later = consume(conn, family, CONSUMED - timedelta(seconds=1), follows=missing)
        after_later = consume(conn, family, CONSUMED, follows=later)
        unrelated = consume(conn, other, CONSUMED, follows=None)
        # At once: the other family's event goes; the family waits for what it lacks.
        assert fan_out(conn, policy, CONSUMED, MAX_WAIT, 100) == 1
        assert fanned_out(conn) == {unrelated}
        assert not fan_out_due(conn, CONSUMED, MAX_WAIT)

    with engine.begin() as conn:
        # The predecessor arrives from its own topic, a moment older than its follower.
        consume(conn, family, CONSUMED - timedelta(seconds=2), event_id=missing)
        assert fan_out_due(conn, CONSUMED, MAX_WAIT)
        # No clock moved: it goes as soon as it is known, and the family in its order.
        assert fan_out(conn, policy, CONSUMED, MAX_WAIT, 1) == 1
        assert fanned_out(conn) == {unrelated, missing}
        assert fan_out(conn, policy, CONSUMED, MAX_WAIT, 1) == 1
        assert fanned_out(conn) == {unrelated, missing, later}
        assert fan_out(conn, policy, CONSUMED, MAX_WAIT, 100) == 1
        assert fanned_out(conn) == {unrelated, missing, later, after_later}


def test_a_predecessor_that_never_comes_holds_its_follower_for_the_bounded_wait_only(
    engine, policy
):
    family = str(uuid4())
    with engine.begin() as conn:
        follower = consume(conn, family, CONSUMED, follows=str(uuid4()))
        almost = CONSUMED + MAX_WAIT - timedelta(milliseconds=1)
        assert not fan_out_due(conn, almost, MAX_WAIT)
        assert fan_out(conn, policy, almost, MAX_WAIT, 100) == 0
        assert fan_out_due(conn, CONSUMED + MAX_WAIT, MAX_WAIT)
        assert fan_out(conn, policy, CONSUMED + MAX_WAIT, MAX_WAIT, 100) == 1
        assert fanned_out(conn) == {follower}
