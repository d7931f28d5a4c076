"""Allocation's decisions on their own: choosing a worker, capacity, caseloads, the panel."""

from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from allocation import domain
from allocation.registry import Registry, read_file
from hub.contracts.allocation import CaseAllocated, PanelMember
from hub.contracts.codes import SupportIntensity
from hub.settings import REPO_ROOT

REGISTRY: Registry = read_file(Path(REPO_ROOT / "config" / "registry.yaml"))
SAMIRA = UUID("7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65")
TOMASZ = UUID("cc56d0f1-f938-4c10-9672-9bfe316be20b")
BISI = UUID("7752939c-ad0d-4ac9-b65e-79ad04a61c1c")
NOW = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)
PANEL = uuid4()


def _facts(born=(date(2015, 6, 12), date(2019, 2, 3)), factors=("3B", "4B")):
    return domain.CaseFacts(uuid4(), uuid4(), "brent-harlesden", tuple(born), tuple(factors))


def _case(facts, worker_id=None):
    state = domain.CaseAllocation(facts.case_id, facts.family_id)
    return state if worker_id is None else domain.replace(state, worker_id=worker_id, version=1)


def test_auto_picks_the_team_for_the_childrens_ages_and_the_most_spare_capacity():
    team, worker = domain.choose_worker(_facts(), REGISTRY, {}, NOW.date())
    assert team.team_id == "harlesden-early-help"
    assert worker.worker_id == SAMIRA  # 12 places free against Tomasz's 7

    _, worker = domain.choose_worker(_facts(), REGISTRY, {str(SAMIRA): 8}, NOW.date())
    assert worker.worker_id == TOMASZ  # 4 free against 7


def test_auto_sends_under_fives_to_the_early_years_team():
    team, worker = domain.choose_worker(
        _facts(born=[date(2023, 1, 1), date(2025, 6, 1)], factors=["16A"]), REGISTRY, {}, NOW.date()
    )
    assert (team.team_id, worker.worker_id) == ("harlesden-early-years", BISI)


def test_auto_prefers_the_team_that_meets_more_of_the_needs():
    # A five-year-old fits both Harlesden teams; domestic abuse and youth work favour 5-19.
    facts = _facts(born=[date(2020, 1, 1)], factors=["3A", "13A"])
    team, _ = domain.choose_worker(facts, REGISTRY, {str(BISI): 0}, NOW.date())
    assert team.team_id == "harlesden-early-help"


def test_auto_takes_the_team_for_most_of_the_children_when_none_takes_all():
    facts = _facts(born=[date(2021, 1, 1), date(2018, 1, 1), date(2016, 1, 1)], factors=[])
    team, _ = domain.choose_worker(facts, REGISTRY, {}, NOW.date())
    assert team.team_id == "harlesden-early-help"  # ages 4, 7 and 9


def test_auto_finds_nobody_when_every_matching_worker_is_full_or_away():
    full = {str(SAMIRA): 12, str(TOMASZ): 7}
    with pytest.raises(domain.NoWorkerAvailable):
        domain.choose_worker(_facts(), REGISTRY, full, NOW.date())
    with pytest.raises(domain.NoWorkerAvailable):
        domain.choose_worker(_facts(), REGISTRY, {str(TOMASZ): 7}, NOW.date(), exclude=[SAMIRA])


def test_allocating_names_the_lead_professional():
    facts = _facts()
    event = domain.allocate(
        _case(facts),
        domain.Allocate("harlesden-early-help", SAMIRA, "dev.patel", NOW),
        REGISTRY,
        caseload=3,
    )
    assert isinstance(event, CaseAllocated)
    assert (event.locality, event.team_id, event.is_reallocation) == (
        "brent-harlesden",
        "harlesden-early-help",
        False,
    )
    assert event.lead_professional.email == "samira.okafor@brent.example.gov.uk"


def test_over_capacity_is_refused_unless_overridden_and_the_override_is_recorded():
    facts = _facts()
    command = domain.Allocate("harlesden-early-help", TOMASZ, "dev.patel", NOW)
    with pytest.raises(domain.OverCapacity):
        domain.allocate(_case(facts), command, REGISTRY, caseload=7)
    overridden = domain.replace(command, override_reason="Knows the family already.")
    event = domain.allocate(_case(facts), overridden, REGISTRY, caseload=7)
    assert "manager override: Knows the family already." in event.reason


@pytest.mark.parametrize(
    ("team_id", "worker_id", "field"),
    [
        ("nowhere-team", SAMIRA, "team_id"),
        ("harlesden-early-help", uuid4(), "worker_id"),
        ("harlesden-early-years", SAMIRA, "worker_id"),
    ],
)
def test_unknown_or_mismatched_team_and_worker_name_the_field(team_id, worker_id, field):
    command = domain.Allocate(team_id, worker_id, "dev.patel", NOW)
    with pytest.raises(domain.InvalidCommand) as raised:
        domain.allocate(_case(_facts()), command, REGISTRY, caseload=0)
    assert raised.value.field == field


def test_allocate_and_reallocate_each_need_the_right_state():
    facts = _facts()
    with pytest.raises(domain.AlreadyAllocated):
        domain.allocate(
            _case(facts, SAMIRA),
            domain.Allocate("harlesden-early-help", TOMASZ, "m", NOW),
            REGISTRY,
            0,
        )
    with pytest.raises(domain.NotAllocated):
        domain.allocate(
            _case(facts),
            domain.Allocate("harlesden-early-help", TOMASZ, "m", NOW, reallocation_reason="r"),
            REGISTRY,
            0,
        )


def test_a_caseload_moves_case_by_case_and_spreads_over_spare_capacity():
    cases = [(_case(f, SAMIRA), f) for f in (_facts() for _ in range(3))]
    events = domain.reallocate_caseload(
        cases, SAMIRA, None, REGISTRY, {str(SAMIRA): 3, str(TOMASZ): 4},
        reason="Samira has left.", override_reason=None, by="dev.patel", at=NOW,
    )  # fmt: skip
    assert [e.case_id for e in events] == [c.case_id for c, _ in cases]
    assert {e.lead_professional.worker_id for e in events} == {TOMASZ}
    assert all(e.is_reallocation and e.reason.startswith("Samira has left.") for e in events)

    # With room for two only, a third case has nowhere to go, so nothing moves.
    with pytest.raises(domain.NoWorkerAvailable):
        domain.reallocate_caseload(
            [*cases, *[(_case(f, SAMIRA), f) for f in (_facts(),)]], SAMIRA, None, REGISTRY,
            {str(TOMASZ): 5}, reason="r", override_reason=None, by="m", at=NOW,
        )  # fmt: skip


def _decision(**changes):
    values = {
        "panel_id": PANEL,
        "package": (
            domain.PackageItem(
                "nw-london-talking-therapies",
                "adult-talking-therapies",
                date(2025, 4, 22),
                SupportIntensity.STANDARD,
            ),
        ),
        "lead_professional_id": SAMIRA,
        "review_date": None,
        "members_present": (PanelMember(name="Grace Mensah", agency="Brent early help"),),
        "decided_by": "brent-panel-chair",
        "decided_at": NOW,
    }
    return domain.RecordDecision(**(values | changes))


def _decide(current, command, taken=None, on_agenda=True):
    return domain.record_decision(current, on_agenda, command, REGISTRY, taken or {}, 3, 3)


def test_a_panel_decision_defaults_the_review_to_three_months_and_commissions_a_place():
    [decision] = _decide(_case(_facts(), SAMIRA), _decision())
    assert decision.review_date == date(2025, 6, 5)
    assert decision.package[0].commissioned is True


def test_a_panel_that_changes_the_lead_professional_moves_the_case_first():
    allocated, decision = _decide(_case(_facts(), SAMIRA), _decision(lead_professional_id=TOMASZ))
    assert allocated.is_reallocation and allocated.lead_professional.worker_id == TOMASZ
    assert decision.lead_professional.worker_id == TOMASZ


def test_panel_refusals():
    current = _case(_facts(), SAMIRA)
    with pytest.raises(domain.NotOnAgenda):
        _decide(current, _decision(), on_agenda=False)
    full = {("nw-london-talking-therapies", "Adult talking therapies, self-referral supported"): 20}
    with pytest.raises(domain.NoPlacesLeft):
        _decide(current, _decision(), taken=full)
    with pytest.raises(domain.InvalidCommand) as late:
        _decide(current, _decision(review_date=date(2025, 6, 6)))
    assert late.value.field == "review_date"
    unknown = domain.PackageItem("nobody", "x", date(2025, 4, 1), SupportIntensity.STANDARD)
    with pytest.raises(domain.InvalidCommand) as provider:
        _decide(current, _decision(package=(unknown,)))
    assert provider.value.field == "package[0].provider_id"


def test_ages_and_months():
    assert domain.age_on(date(2015, 6, 12), date(2025, 6, 11)) == 9
    assert domain.age_on(date(2015, 6, 12), date(2025, 6, 12)) == 10
    assert domain.age_on(date(2026, 1, 1), date(2025, 6, 12)) == 0
    assert domain.add_months(date(2025, 11, 30), 3) == date(2026, 2, 28)


def test_a_postcode_sector_wins_over_its_district():
    assert REGISTRY.locality_for_postcode("NW10 8SE") == "brent-harlesden"
    assert REGISTRY.locality_for_postcode("nw10 2ab") == "brent-willesden"
    assert REGISTRY.locality_for_postcode("SW1A 1AA") is None


def test_a_review_date_is_after_the_day_of_the_decision_in_england():
    # 23:30 UTC on 30 June is 00:30 on 1 July in London.
    late_evening_utc = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    current = _case(_facts(), SAMIRA)

    with pytest.raises(domain.InvalidCommand) as same_day:
        _decide(current, _decision(decided_at=late_evening_utc, review_date=date(2026, 7, 1)))
    assert same_day.value.field == "review_date"
    [decision] = _decide(
        current, _decision(decided_at=late_evening_utc, review_date=date(2026, 7, 2))
    )
    assert decision.review_date == date(2026, 7, 2)
