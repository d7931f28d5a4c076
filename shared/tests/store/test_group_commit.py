import asyncio
import contextvars
from uuid import uuid4

from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, func, insert, select

from hub.store import EventStore, PendingEvent
from hub.tables import event_store
from hub.writer import GroupCommitWriter

from ..events import referral_received

store = EventStore("earlyhelp.intake.v1")


def _append(stream_id):
    def work(conn):
        store.append(conn, stream_id, 0, [PendingEvent(referral_received())])
        return stream_id

    return work


def _fail(conn):
    store.append(conn, "referral-doomed", 0, [PendingEvent(referral_received())])
    raise ValueError("this write changes its mind")


def test_concurrent_writes_commit_together_and_a_failing_one_alone_is_undone(db):
    commits = []
    writer = GroupCommitWriter(db, "test", after_commit=lambda: commits.append(1))

    async def submit_all():
        works = [_append(f"referral-{uuid4()}") for _ in range(20)]
        works.insert(7, _fail)
        return await asyncio.gather(*(writer.run(w) for w in works), return_exceptions=True)

    try:
        outcomes = asyncio.run(submit_all())
    finally:
        writer.close()

    failures = [o for o in outcomes if isinstance(o, Exception)]
    assert [str(f) for f in failures] == ["this write changes its mind"]
    with db.read() as conn:
        streams = set(conn.execute(select(event_store.c.stream_id)).scalars())
    assert streams == {o for o in outcomes if isinstance(o, str)}
    assert "referral-doomed" not in streams
    assert 1 <= len(commits) < 21  # grouped: fewer commits than writes


test_tables = MetaData()
parents = Table("parents", test_tables, Column("id", Integer, primary_key=True))
children = Table(
    "children",
    test_tables,
    Column("id", Integer, primary_key=True),
    # Checked only at COMMIT, so the group's commit itself fails.
    Column(
        "parent_id",
        Integer,
        ForeignKey("parents.id", deferrable=True, initially="DEFERRED"),
        nullable=False,
    ),
)


def test_a_failed_commit_fails_every_write_in_the_group(db):
    test_tables.create_all(db.engine)
    writer = GroupCommitWriter(db, "test")

    def orphan(conn):
        conn.execute(insert(children).values(id=1, parent_id=404))

    async def submit():
        return await asyncio.gather(
            writer.run(_append("referral-a")), writer.run(orphan), return_exceptions=True
        )

    try:
        outcomes = asyncio.run(submit())
    finally:
        writer.close()

    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    with db.read() as conn:
        assert conn.execute(select(func.count()).select_from(event_store)).scalar_one() == 0


def test_the_writer_carries_the_callers_context(db):
    marker = contextvars.ContextVar("marker", default="unset")
    writer = GroupCommitWriter(db, "test")

    async def main():
        marker.set("the request's")
        return await writer.run(lambda conn: marker.get())

    try:
        assert asyncio.run(main()) == "the request's"
    finally:
        writer.close()
