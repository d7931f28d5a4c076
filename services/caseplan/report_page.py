"""The performance report as a printable page, with charts of the measures month by month.

The charts are drawn by matplotlib as SVG inside the page (no script, no request
elsewhere: the page prints, and can be saved and mailed, as it is); the page itself
is a Jinja2 template that escapes every value.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from matplotlib import rc_context
from matplotlib.figure import Figure

from caseplan.schemas import PerformanceReport

_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Fixed ids in the SVG: the same report draws the same page.
_SVG = {"svg.hashsalt": "earlyhelp-performance", "svg.fonttype": "none"}
FOUR_WEEKS_DAYS = 28

Months = Sequence[tuple[date, PerformanceReport]]


def _svg(figure: Figure) -> Markup:
    out = io.StringIO()
    with rc_context(_SVG):
        figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = out.getvalue()
    return Markup(svg[svg.index("<svg") :])  # the drawing without its XML prologue


def _figure(title: str) -> tuple[Figure, object]:
    figure = Figure(figsize=(7.5, 2.8))
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    axes.tick_params(labelsize=8)
    return figure, axes


def _labels(months: Months) -> list[str]:
    return [start.strftime("%b %y") for start, _ in months]


def volumes_chart(months: Months) -> Markup:
    figure, axes = _figure("Referrals received and cases opened")
    positions = range(len(months))
    received = [sum(report.referrals_by_source.values()) for _, report in months]
    opened = [report.cases_opened for _, report in months]
    axes.bar([p - 0.2 for p in positions], received, width=0.4, label="referrals received")
    axes.bar([p + 0.2 for p in positions], opened, width=0.4, label="cases opened")
    axes.set_xticks(list(positions), _labels(months))
    axes.legend(fontsize=8, frameon=False)
    return _svg(figure)


def service_start_chart(months: Months) -> Markup:
    figure, axes = _figure("Days from assessment to the first service start")
    labels = _labels(months)
    median = [report.assessment_to_service_start.median_days for _, report in months]
    p90 = [report.assessment_to_service_start.p90_days for _, report in months]
    axes.plot(labels, [nan(v) for v in median], marker="o", label="median")
    axes.plot(labels, [nan(v) for v in p90], marker="s", linestyle="--", label="90th percentile")
    axes.axhline(FOUR_WEEKS_DAYS, color="grey", linewidth=1)
    axes.annotate("4 weeks", (0, FOUR_WEEKS_DAYS), fontsize=8, color="grey")
    axes.legend(fontsize=8, frameon=False)
    return _svg(figure)


def share_chart(months: Months) -> Markup:
    figure, axes = _figure("Service starts within 4 weeks of the assessment (%)")
    share = [report.assessment_to_service_start.within_four_weeks_percent for _, report in months]
    axes.bar(_labels(months), [v or 0 for v in share])
    axes.set_ylim(0, 100)
    return _svg(figure)


def reviews_chart(months: Months) -> Markup:
    figure, axes = _figure("Reviews held on time (%)")
    on_time = [report.reviews_on_time_percent for _, report in months]
    axes.plot(_labels(months), [nan(v) for v in on_time], marker="o")
    axes.set_ylim(0, 100)
    return _svg(figure)


def nan(value: float | None) -> float:
    """A month with no cases is a gap in the line, not a zero."""
    return float("nan") if value is None else value


def render(report: PerformanceReport, months: Months, generated_at: datetime) -> str:
    stages = {
        "Referral to triage": report.referral_to_triage,
        "Triage to allocation": report.triage_to_allocation,
        "Allocation to completed assessment": report.allocation_to_assessment,
        "Assessment to the first service start": report.assessment_to_service_start,
    }
    return _PAGES.get_template("performance.html").render(
        report=report,
        stages=stages,
        generated_at=generated_at,
        charts=[
            volumes_chart(months),
            service_start_chart(months),
            share_chart(months),
            reviews_chart(months),
        ],
    )
