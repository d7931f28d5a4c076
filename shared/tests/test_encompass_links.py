"""The Operation Encompass acknowledgement link: who holds its key, and what it signs."""

import stat
from uuid import uuid4

import pytest
from pydantic import SecretStr

from hub.encompass_links import KEY_FILE, acknowledgement_link, link_key, sign, verify
from hub.settings import HubSettings

SQLITE = "sqlite:///hub.db"
POSTGRES = "postgresql+psycopg://hub@db/intake"


def _settings(tmp_path, database_url=SQLITE, key=""):
    return HubSettings(
        service_name="intake",
        database_url=database_url,
        var_dir=tmp_path,
        encompass_link_key=SecretStr(key),
    )


def test_the_embedded_default_makes_one_key_that_every_service_of_its_var_dir_reads(tmp_path):
    first = link_key(_settings(tmp_path))
    again = link_key(_settings(tmp_path))

    assert first == again and len(first) >= 32
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no draft left behind


def test_elsewhere_a_key_is_configured_or_links_are_off(tmp_path):
    assert link_key(_settings(tmp_path, POSTGRES)) is None
    assert not (tmp_path / KEY_FILE).exists()
    assert link_key(_settings(tmp_path, POSTGRES, "k" * 32)) == b"k" * 32
    with pytest.raises(ValueError, match="at least 32 characters"):
        link_key(_settings(tmp_path, POSTGRES, "short"))


def test_a_link_acknowledges_one_notice_for_one_school_under_one_key():
    notice, key = uuid4(), b"k" * 32
    token = sign(key, notice, "harlesden-primary-school")

    assert verify(key, notice, "harlesden-primary-school", token)
    assert not verify(key, notice, "st-marys-primary", token)
    assert not verify(key, uuid4(), "harlesden-primary-school", token)
    assert not verify(b"x" * 32, notice, "harlesden-primary-school", token)
    link = acknowledgement_link("https://hub.example/", key, notice, "harlesden-primary-school")
    assert link == (
        f"https://hub.example/v1/encompass-notices/{notice}/acknowledgement-link"
        f"?school=harlesden-primary-school&token={token}"
    )
