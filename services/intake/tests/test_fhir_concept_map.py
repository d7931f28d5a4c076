"""The concept map of FHIR codings onto the hub's vocabularies: every mapping lands on a real
hub code, says what it means, and the CIN factors are all reachable."""

import pytest
import yaml

from hub.contracts.codes import CinFactor, HouseholdRelationship, ReferralSource, Urgency
from intake.fhir_mapping import CONCEPT_MAP, concept_map, translate

VOCABULARIES = {
    "reason": CinFactor,
    "priority": Urgency,
    "relationship": HouseholdRelationship,
    "referral_source": ReferralSource,
}


def test_the_map_has_exactly_the_groups_the_front_door_reads():
    assert set(concept_map()) == set(VOCABULARIES)


@pytest.mark.parametrize("group", sorted(VOCABULARIES))
def test_every_mapping_lands_on_a_hub_code_and_says_what_it_means(group):
    vocabulary = VOCABULARIES[group]
    for mapping in concept_map()[group].values():
        assert vocabulary(mapping.target), mapping
        assert mapping.meaning.strip() and mapping.system.startswith("http"), mapping


def test_no_coding_is_mapped_twice():
    raw = yaml.safe_load(CONCEPT_MAP.read_text())
    for group, entries in raw.items():
        keys = [(entry["system"], entry["code"]) for entry in entries]
        assert len(keys) == len(set(keys)), group


def test_every_cin_factor_and_household_relationship_can_be_coded():
    assert {m.target for m in concept_map()["reason"].values()} == {f.value for f in CinFactor}
    relationships = {m.target for m in concept_map()["relationship"].values()}
    assert relationships == {r.value for r in HouseholdRelationship}


def test_every_fhir_priority_maps_to_an_urgency():
    system = "http://hl7.org/fhir/request-priority"
    assert [translate("priority", system, p) for p in ("routine", "urgent", "asap", "stat")] == [
        "routine",
        "urgent",
        "immediate",
        "immediate",
    ]


def test_a_coding_the_map_does_not_name_maps_to_nothing():
    cin = "https://earlyhelp.example/fhir/CodeSystem/cin-factor"
    assert translate("reason", cin, "3B") == "3B"
    assert translate("reason", cin, "99Z") is None
    assert translate("reason", "http://snomed.info/sct", "3B") is None
    assert translate("relationship", None, "MTH") is None
