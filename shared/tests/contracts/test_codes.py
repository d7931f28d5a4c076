from pydantic import TypeAdapter

from hub.contracts.codes import (
    CinFactor,
    ClosureReason,
    LabelledCode,
    LevelOfNeed,
    ReferralSource,
    SupportingFamiliesOutcome,
    TriageRoute,
)


def test_referral_sources_are_the_cin_census_codes():
    assert [code.value for code in ReferralSource] == [
        "1A", "1B", "1C", "1D", "2A", "2B", "3A", "3B", "3C", "3D", "3E", "3F",
        "4", "5A", "5B", "5C", "5D", "6", "7", "8", "9", "10",
    ]  # fmt: skip


def test_factors_are_the_cin_census_codes():
    by_whom = [f"{number}{suffix}" for number in range(1, 7) for suffix in "ABC"]
    assert [code.value for code in CinFactor] == [
        *by_whom, "7A", "8B", "8C", "8D", "8E", "8F", "9A", "10A", "11A", "12A", "13A", "14A",
        "15A", "16A", "17A", "18B", "18C", "19B", "19C", "20", "21", "22A", "23A", "24A",
    ]  # fmt: skip


def test_the_ten_supporting_families_outcomes():
    assert len(SupportingFamiliesOutcome) == 10
    assert SupportingFamiliesOutcome("good_education").label == "Getting a good education"


def test_vocabularies_the_services_branch_on():
    assert [c.value for c in LevelOfNeed] == [
        "universal", "universal_plus", "early_help", "targeted", "specialist",
    ]  # fmt: skip
    assert [c.value for c in TriageRoute] == [
        "signpost_universal", "early_help", "social_care", "no_further_action",
    ]  # fmt: skip
    assert {c.value for c in ClosureReason} >= {"needs_met", "stepped_up", "consent_withdrawn"}


def test_every_code_has_a_label_and_compares_as_its_string():
    for vocabulary in LabelledCode.__subclasses__():
        for code in vocabulary:
            assert code.label and code.label != code.value
            assert code == code.value and str(code) == code.value
            assert vocabulary(code.value) is code


def test_json_schema_shows_the_labels():
    schema = TypeAdapter(ReferralSource).json_schema()
    assert schema["enum"][0] == "1A"
    assert schema["x-enum-labels"]["6"] == "Police"
