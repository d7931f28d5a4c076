"""The retention schedule: the file, and the dates it gives (pure, no I/O but the file)."""

from datetime import date
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from hub.retention import RetentionSchedule, add_years, case_records_due, load_schedule

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = RetentionSchedule.model_validate(
    {
        "case_records": {"years_after_closure": 6, "until_age": 25},
        "idempotency_records": {"days": 30},
        "audit_rows": {"days": 2190},
        "notifications_delivery_data": {"governed_by": "EARLYHELP_NOTIFICATIONS_RETENTION_DAYS"},
        "dead_letter_topics": {"kafka_retention_days": 30},
    }
)


def test_the_repository_s_schedule_is_valid_and_names_every_kind():
    schedule = load_schedule(ROOT / "config" / "retention.yaml")
    assert schedule == SCHEDULE


@pytest.mark.parametrize(
    "path, value",
    [(("case_records", "years_after_closure"), None), (("audit_rows", "days"), 0)],
)
def test_a_missing_or_impossible_period_is_refused_by_name(tmp_path, path, value):
    raw = yaml.safe_load((ROOT / "config" / "retention.yaml").read_text())
    section, field = path
    if value is None:
        del raw[section][field]
    else:
        raw[section][field] = value
    (tmp_path / "retention.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValidationError) as refused:
        load_schedule(tmp_path / "retention.yaml")
    assert f"{section}.{field}" in str(refused.value)


def test_an_unknown_key_is_refused_rather_than_ignored(tmp_path):
    raw = yaml.safe_load((ROOT / "config" / "retention.yaml").read_text())
    raw["idempotency_records"]["weeks"] = 2  # a typo must not leave the period unset
    (tmp_path / "retention.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValidationError, match=r"idempotency_records\.weeks"):
        load_schedule(tmp_path / "retention.yaml")


def test_a_leap_day_reaches_its_anniversary_on_1_march_of_a_common_year():
    assert add_years(date(2012, 2, 29), 25) == date(2037, 3, 1)
    assert add_years(date(2012, 2, 29), 28) == date(2040, 2, 29)
    assert add_years(date(2015, 6, 12), 25) == date(2040, 6, 12)


def test_the_youngest_child_s_25th_birthday_when_it_is_later():
    due = case_records_due(SCHEDULE, [date(2020, 3, 1)], [date(2010, 5, 1), date(2015, 6, 12)])
    assert due == date(2040, 6, 12)


def test_years_after_the_last_closure_when_they_are_later():
    due = case_records_due(SCHEDULE, [date(2019, 1, 1), date(2024, 7, 31)], [date(1999, 5, 1)])
    assert due == date(2030, 7, 31)


def test_a_closure_on_a_leap_day():
    assert case_records_due(SCHEDULE, [date(2024, 2, 29)], []) == date(2030, 3, 1)


def test_a_child_born_on_a_leap_day_is_kept_to_1_march():
    assert case_records_due(SCHEDULE, [date(2020, 1, 1)], [date(2012, 2, 29)]) == date(2037, 3, 1)


def test_an_open_case_or_no_case_is_never_due():
    assert case_records_due(SCHEDULE, [date(2001, 1, 1), None], [date(1980, 1, 1)]) is None
    assert case_records_due(SCHEDULE, [], [date(1980, 1, 1)]) is None


def test_an_unborn_child_leaves_the_years_after_closure():
    assert case_records_due(SCHEDULE, [date(2020, 1, 1)], [None]) == date(2026, 1, 1)
