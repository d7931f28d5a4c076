from collections.abc import Iterator

import pytest

from hub.db import Database
from hub.tables import metadata


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    metadata.create_all(database.engine)
    yield database
    database.dispose()
