"""Late events correct early guesses: every consumer's read models end in the same state
whatever order a referral's events arrive in.

After the front door matches a referral to a known family, its later events are keyed
by that family and sit on another partition than `ReferralReceived`, and events of
different services' topics are never ordered against each other: a consumer can see
a triage, an allocation or a closure before the referral itself. Each referral here
lives through its whole life (received, moved by a match, triaged into a case,
allocated, assessed, to panel, reviewed, closed); for every pair of those events
that the service consumes, one referral gets the pair in its true order and another
in the reverse order, through the real broker, with the two events on different
family keys where the life gives them different families. A referral also gets all
of them in order, and another all of them in reverse. The rows each referral leaves
in the service's projections, with its identifiers replaced by their roles, must be
the same.
"""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.caseplan import AssessmentCompleted, CaseClosed, PlanReviewed
from hub.contracts.codes import Urgency
from hub.contracts.intake import MatchConfirmed, ReferralReceived, ReferralTriaged
from hub.contracts.topics import service_topic
from hub.service import ServiceDefinition

# Columns that say when a row was written, not what the events said.
WALL_CLOCK_COLUMNS = {
    "recorded_at",
    "journalled_at",
    "handled_at",
    "updated_at",
    "fanned_out",
    "traceparent",
    "tracestate",
    "seq",
}
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Referral:
    """One referral's identifiers and its life as events, in the order they happened."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.ids = {
            "referral": uuid.uuid4(),
            "first_family": uuid.uuid4(),
            "matched_family": uuid.uuid4(),
            "case": uuid.uuid4(),
            "panel": uuid.uuid4(),
            "assessment": uuid.uuid4(),
            "review": uuid.uuid4(),
        }
        ids = self.ids
        received = ReferralReceived.example()
        received = received.model_copy(
            update={
                "referral_id": ids["referral"],
                "family_id": ids["first_family"],
                # Urgent, so that a queue which guessed "routine" shows it.
                "urgency": Urgency.URGENT,
            }
        )
        on_case = {"family_id": ids["matched_family"], "case_id": ids["case"]}
        self.life: list[tuple[str, Any]] = [
            ("received", received),
            (
                "matched",
                MatchConfirmed.example().model_copy(
                    update={
                        "referral_id": ids["referral"],
                        "family_id": ids["matched_family"],
                        "previous_family_id": ids["first_family"],
                    }
                ),
            ),
            (
                "triaged",
                ReferralTriaged.example().model_copy(
                    update={"referral_id": ids["referral"], **on_case}
                ),
            ),
            ("allocated", CaseAllocated.example().model_copy(update=on_case)),
            (
                "assessed",
                AssessmentCompleted.example().model_copy(
                    update={"assessment_id": ids["assessment"], **on_case}
                ),
            ),
            (
                "panel",
                PanelDecisionRecorded.example().model_copy(
                    update={"panel_id": ids["panel"], **on_case}
                ),
            ),
            (
                "reviewed",
                PlanReviewed.example().model_copy(update={"review_id": ids["review"], **on_case}),
            ),
            ("closed", CaseClosed.example().model_copy(update=on_case)),
        ]
        self.event_ids = {name: uuid.uuid4() for name, _ in self.life}
        # When each happened: the order of the life, a day apart.
        self.times = {name: START + timedelta(days=i) for i, (name, _) in enumerate(self.life)}

    def event(self, name: str):
        return dict(self.life)[name]

    def follows(self, name: str) -> str | None:
        """The event the producer names as the one this follows (`hub.family_order`): the
        family's previous event in the life, whatever order they are delivered in."""
        family = self.event(name).family_id
        earlier = [n for n, event in self.life[: self._place(name)] if event.family_id == family]
        return str(self.event_ids[earlier[-1]]) if earlier else None

    def _place(self, name: str) -> int:
        return [n for n, _ in self.life].index(name)

    def roles(self) -> dict[str, str]:
        """{identifier: its role}, for comparing two referrals' rows."""
        roles = {str(value): f"<{role}>" for role, value in self.ids.items()}
        roles |= {str(value): f"<event:{name}>" for name, value in self.event_ids.items()}
        return roles


def _consumed(definition: ServiceDefinition, event) -> bool:
    """Whether the service takes the event from Kafka (its own it applies as it stores them)."""
    return service_topic(event.producer) in definition.consumes and any(
        projection.handles(event.event_type) for projection in definition.projections
    )


def _normalised(value: Any, roles: dict[str, str]) -> Any:
    text = str(value) if value is not None else None
    if text is None:
        return None
    for identifier, role in roles.items():
        text = text.replace(identifier, role)
    return text


def _state(engine: sa.Engine, definition: ServiceDefinition, referral: Referral) -> list[str]:
    """Every projection row that names one of the referral's identifiers, by role."""
    roles = referral.roles()
    rows = []
    with engine.connect() as conn:
        for projection in definition.projections:
            for table in projection.tables:
                for row in conn.execute(sa.select(table)).mappings():
                    values = {k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS}
                    if not any(
                        identifier in str(v) for v in values.values() for identifier in roles
                    ):
                        continue
                    rows.append(
                        f"{table.name}: "
                        + ", ".join(
                            f"{k}={_normalised(v, roles)}" for k, v in sorted(values.items())
                        )
                    )
    return sorted(rows)


def _applied(engine: sa.Engine, event_ids: set[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT DISTINCT event_id FROM inbox")).scalars()
        return event_ids & set(rows)


@pytest.mark.parametrize("service", ["allocation", "caseplan", "notifications"])
def test_every_pair_of_a_referrals_events_ends_the_same_in_either_order(
    service, service_client, publish, database_url
):
    from hub.cli import load_definition

    definition = load_definition(service)
    service_client(definition)
    engine = sa.create_engine(database_url, poolclass=NullPool)
    names = [name for name, event in Referral("probe").life if _consumed(definition, event)]
    assert len(names) >= 4, names

    # Each delivery plan: a referral and the order its events are delivered in.
    plans: list[tuple[Referral, list[str]]] = []
    for first, second in itertools.combinations(names, 2):
        plans.append((Referral(f"{first}<{second}"), [first, second]))
        plans.append((Referral(f"{second}<{first}"), [second, first]))
    plans.append((Referral("in order"), list(names)))
    plans.append((Referral("reversed"), list(reversed(names))))

    # Round k delivers each plan's k-th event and waits until the service has applied
    # them all, so that every referral's events arrive in its plan's order even when
    # they travel on different partitions.
    for round_number in range(len(names)):
        sent = set()
        for referral, order in plans:
            if round_number < len(order):
                name = order[round_number]
                publish(
                    referral.event(name),
                    event_id=str(referral.event_ids[name]),
                    time=referral.times[name],
                    follows=referral.follows(name),
                )
                sent.add(str(referral.event_ids[name]))
        deadline = time.monotonic() + 60
        while _applied(engine, sent) != sent:
            assert time.monotonic() < deadline, f"{service} never applied round {round_number}"
            time.sleep(0.1)

    states = {referral.label: _state(engine, definition, referral) for referral, _ in plans}
    engine.dispose()
    differences = {}
    for first, second in itertools.combinations(names, 2):
        forward, backward = states[f"{first}<{second}"], states[f"{second}<{first}"]
        if forward != backward:
            differences[f"{first} / {second}"] = sorted(set(forward) ^ set(backward))
    if states["in order"] != states["reversed"]:
        differences["all in order / all reversed"] = sorted(
            set(states["in order"]) ^ set(states["reversed"])
        )
    assert not differences, "\n".join(
        f"{pair}:\n  " + "\n  ".join(rows) for pair, rows in differences.items()
    )
