"""Every service's migrations build exactly the tables its code uses, and take them down again."""

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub import migrations
from hub.tables import metadata as hub_metadata

SERVICES = ("intake", "allocation", "caseplan", "notifications")


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_match_the_code_and_downgrade_cleanly(service, database_url):
    definition = importlib.import_module(f"{service}.service").definition
    service_metadata = importlib.import_module(f"{service}.projections").metadata

    migrations.upgrade(definition.migrations, database_url)
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, [hub_metadata, service_metadata])
        assert differences == [], f"{service}: migrations and tables disagree: {differences}"

        migrations.downgrade(definition.migrations, database_url, "base")
        left = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        assert left == set()

        migrations.upgrade(definition.migrations, database_url)  # and up again
        assert "event_store" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
