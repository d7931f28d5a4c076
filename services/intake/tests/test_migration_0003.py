"""0003 adds the queue's columns to a `referrals` table that may already hold referrals."""

from datetime import UTC, datetime

import sqlalchemy as sa

from hub import migrations
from intake.service import definition


def test_existing_referrals_get_their_urgency_rank_and_go_back_down(database_url):
    migrations.upgrade(definition.migrations, database_url, "0002")
    engine = sa.create_engine(database_url)
    now = datetime(2025, 3, 3, 9, 42, tzinfo=UTC)
    old_columns = {
        "family_id": "5b0c1c8e-2f4a-4d7b-9a51-3c2e8f6d1a90",
        "status": "received",
        "referral_source": "2A",
        "children_count": 1,
        "received_at": now,
        "updated_at": now,
    }
    try:
        with engine.begin() as conn:
            table = sa.Table("referrals", sa.MetaData(), autoload_with=conn)
            conn.execute(
                sa.insert(table),
                [
                    old_columns
                    | {"referral_id": f"00000000-0000-4000-8000-00000000000{i}", "urgency": urgency}
                    for i, urgency in enumerate(("routine", "immediate", "urgent"))
                ],
            )

        migrations.upgrade(definition.migrations, database_url)

        with engine.connect() as conn:
            ranks = conn.execute(
                sa.text("SELECT urgency, urgency_rank FROM referrals ORDER BY urgency_rank")
            ).all()
        assert [tuple(row) for row in ranks] == [("immediate", 0), ("urgent", 1), ("routine", 2)]

        migrations.downgrade(definition.migrations, database_url, "0002")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("referrals")}
        assert "urgency_rank" not in columns and "lead_professional_name" not in columns
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT count(*) FROM referrals")).scalar_one()
        assert count == 3
    finally:
        engine.dispose()
