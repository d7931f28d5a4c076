"""The performance report's printable page: drawn from the report, month by month."""

from datetime import UTC, date, datetime

from caseplan import queries, report_page
from caseplan.claims import ClaimRules

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)


def _empty(locality, start, end):
    return queries._report(locality, start, end, NOW, ClaimRules(), [], [], [], [], [], [])


def test_the_page_has_its_four_charts_and_escapes_what_it_shows():
    locality = "<b>harlesden</b>"
    months = [
        (date(2026, 1, 1), _empty(locality, date(2026, 1, 1), date(2026, 1, 31))),
        (date(2026, 2, 1), _empty(locality, date(2026, 2, 1), date(2026, 2, 28))),
    ]
    page = report_page.render(_empty(locality, date(2026, 1, 1), date(2026, 2, 28)), months, NOW)

    assert page.count("<svg") == 4
    assert "<script" not in page
    assert "&lt;b&gt;harlesden&lt;/b&gt;" in page and "<b>harlesden</b>" not in page
    assert "Jan 26" in page and "Feb 26" in page
    # The same report draws the same page.
    assert page == report_page.render(
        _empty(locality, date(2026, 1, 1), date(2026, 2, 28)), months, NOW
    )
