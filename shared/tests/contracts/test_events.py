import copy
from typing import Any

import pytest
from pydantic import ValidationError

from hub.contracts.allocation import CaseAllocated, PanelDecisionRecorded
from hub.contracts.base import EventData
from hub.contracts.caseplan import (
    AssessmentCompleted,
    CaseClosed,
    CaseSteppedDown,
    CaseSteppedUp,
    PlanReviewed,
)
from hub.contracts.intake import ReferralReceived, ReferralTriaged, ReferralWithdrawn
from hub.contracts.registry import EVENT_TYPES, UnknownEventType, event_model

V1_EVENT_TYPES = {
    "earlyhelp.referral.received.v1": "intake",
    "earlyhelp.referral.triaged.v1": "intake",
    "earlyhelp.referral.withdrawn.v1": "intake",
    "earlyhelp.referral.possible_match_found.v1": "intake",
    "earlyhelp.referral.match_confirmed.v1": "intake",
    "earlyhelp.referral.match_rejected.v1": "intake",
    "earlyhelp.referral.unlinked.v1": "intake",
    "earlyhelp.encompass.notice_issued.v1": "intake",
    "earlyhelp.encompass.notice_acknowledged.v1": "intake",
    "earlyhelp.encompass.notice_alerted.v1": "intake",
    "earlyhelp.case.allocated.v1": "allocation",
    "earlyhelp.panel.decision_recorded.v1": "allocation",
    "earlyhelp.assessment.completed.v1": "caseplan",
    "earlyhelp.plan.action_added.v1": "caseplan",
    "earlyhelp.plan.outcome_agreed.v1": "caseplan",
    "earlyhelp.plan.reviewed.v1": "caseplan",
    "earlyhelp.case.stepped_up.v1": "caseplan",
    "earlyhelp.case.stepped_down.v1": "caseplan",
    "earlyhelp.case.closed.v1": "caseplan",
    "earlyhelp.case.team_member_added.v1": "caseplan",
    "earlyhelp.case.team_member_removed.v1": "caseplan",
    "earlyhelp.case.consent_recorded.v1": "caseplan",
    "earlyhelp.case.consent_narrowed.v1": "caseplan",
    "earlyhelp.case.consent_withdrawn.v1": "caseplan",
    "earlyhelp.case.safeguarding_override_recorded.v1": "caseplan",
    "earlyhelp.case.safeguarding_override_ended.v1": "caseplan",
    "earlyhelp.case.child_school_recorded.v1": "caseplan",
    "earlyhelp.case.service_started.v1": "caseplan",
    "earlyhelp.consultation.requested.v1": "intake",
    "earlyhelp.consultation.advice_recorded.v1": "intake",
    "earlyhelp.consultation.referred.v1": "intake",
}


def example(model: type[EventData]) -> dict[str, Any]:
    return copy.deepcopy(model.examples()[0])


def rejection(model: type[EventData], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return str(caught.value)


def test_registry_holds_exactly_the_v1_event_types_and_their_producers():
    assert {t: model.producer for t, model in EVENT_TYPES.items()} == V1_EVENT_TYPES


def test_event_model_looks_up_and_refuses_unknown_types():
    assert event_model("earlyhelp.case.closed.v1") is CaseClosed
    with pytest.raises(UnknownEventType) as caught:
        event_model("earlyhelp.case.reopened.v1")
    assert caught.value.event_type == "earlyhelp.case.reopened.v1"


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_models_validate_their_own_examples_and_round_trip(model):
    for data in model.examples():
        event = model.model_validate(data)
        assert model.model_validate_json(event.model_dump_json()) == event
        assert event.model_dump(mode="json", exclude_unset=True) == data


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_subject_is_the_aggregate_id(model):
    event = model.example()
    aggregate_id = (
        getattr(event, "consultation_id", None)  # a consultation's referral is another's
        or getattr(event, "referral_id", None)
        or event.case_id
    )
    assert event.subject() == str(aggregate_id)


def test_events_are_immutable_and_refuse_unknown_fields():
    event = CaseClosed.example()
    with pytest.raises(ValidationError):
        event.reason = "other"
    assert "extra_forbidden" in rejection(CaseClosed, {**example(CaseClosed), "colour": "red"})


def test_timestamps_must_carry_an_offset():
    data = example(CaseClosed) | {"closed_at": "2025-12-15T12:00:00"}
    assert "timezone" in rejection(CaseClosed, data)


class TestReferralReceived:
    def test_a_referrer_is_required_unless_anonymous(self):
        data = example(ReferralReceived) | {"referrer": None}
        assert "referrer is required" in rejection(ReferralReceived, data)
        data["referral_source"] = "9"
        assert ReferralReceived.model_validate(data).referrer is None

    def test_an_anonymous_referral_names_no_referrer(self):
        data = example(ReferralReceived) | {"referral_source": "9"}
        assert "absent for an anonymous" in rejection(ReferralReceived, data)

    def test_consent_or_a_safeguarding_override_is_required(self):
        data = example(ReferralReceived) | {"consent": None}
        assert "safeguarding_override" in rejection(ReferralReceived, data)
        data["safeguarding_override"] = {
            "reason": "Asking the father would put the children at risk.",
            "recorded_by": "front.door@brent.example.gov.uk",
            "recorded_at": "2025-03-03T10:00:00Z",
        }
        assert ReferralReceived.model_validate(data).consent is None

    def test_at_least_one_child(self):
        data = example(ReferralReceived) | {"children": []}
        assert "children" in rejection(ReferralReceived, data)

    def test_people_appear_once(self):
        data = example(ReferralReceived)
        data["household_members"][0]["person_id"] = data["children"][0]["person_id"]
        assert "appears more than once" in rejection(ReferralReceived, data)

    def test_a_child_has_a_date_of_birth_or_an_expected_one(self):
        data = example(ReferralReceived)
        data["children"][0]["expected_date_of_birth"] = "2025-09-01"
        assert "exactly one of date_of_birth" in rejection(ReferralReceived, data)
        del data["children"][0]["date_of_birth"]
        assert ReferralReceived.model_validate(data).children[0].date_of_birth is None
        del data["children"][0]["expected_date_of_birth"]
        assert "exactly one of date_of_birth" in rejection(ReferralReceived, data)

    def test_identifiers_are_checked_where_they_sit(self):
        data = example(ReferralReceived)
        data["children"][1]["nhs_number"] = "999 000 0027"
        data["children"][1]["address"]["postcode"] = "NW10"
        with pytest.raises(ValidationError) as caught:
            ReferralReceived.model_validate(data)
        locations = {error["loc"] for error in caught.value.errors()}
        assert locations == {
            ("children", 1, "nhs_number"),
            ("children", 1, "address", "postcode"),
        }

    def test_identifiers_are_normalised(self):
        data = example(ReferralReceived)
        data["children"][0]["nhs_number"] = "999 000 0018"
        data["children"][0]["address"]["postcode"] = "nw108se"
        child = ReferralReceived.model_validate(data).children[0]
        assert (child.nhs_number, child.address.postcode) == ("9990000018", "NW10 8SE")

    def test_cin_factor_rules(self):
        data = example(ReferralReceived)
        data["concerns"]["factors"] = ["3B", "3B"]
        assert "factors repeats 3B" in rejection(ReferralReceived, data)
        data["concerns"]["factors"] = ["21", "3B"]
        assert "cannot be combined" in rejection(ReferralReceived, data)
        data["concerns"]["factors"] = ["99"]
        assert "concerns.factors.0" in rejection(ReferralReceived, data)

    def test_a_referring_organisation_is_described(self):
        data = example(ReferralReceived)
        del data["referrer"]["organisation_type"]
        assert "organisation_type and organisation_name" in rejection(ReferralReceived, data)

    def test_a_referrer_can_be_contacted(self):
        data = example(ReferralReceived)
        del data["referrer"]["email"], data["referrer"]["phone"]
        assert "email or a phone" in rejection(ReferralReceived, data)


class TestReferralTriaged:
    def test_early_help_needs_a_case_and_a_locality(self):
        data = example(ReferralTriaged) | {"case_id": None}
        assert "case_id is required" in rejection(ReferralTriaged, data)
        data = example(ReferralTriaged) | {"locality": None}
        assert "locality is required" in rejection(ReferralTriaged, data)

    def test_other_routes_open_no_case(self):
        data = example(ReferralTriaged) | {"route": "social_care", "level_of_need": "specialist"}
        assert "only then" in rejection(ReferralTriaged, data)
        data |= {"case_id": None, "locality": None}
        assert ReferralTriaged.model_validate(data).case_id is None

    def test_only_early_help_joins_an_open_case(self):
        data = example(ReferralTriaged) | {
            "route": "signpost_universal",
            "case_id": None,
            "joins_open_case": True,
        }
        assert "joins_open_case" in rejection(ReferralTriaged, data)


def test_a_withdrawal_gives_a_reason_and_who_withdrew():
    for missing in ("reason", "withdrawn_by", "withdrawn_at"):
        data = example(ReferralWithdrawn)
        del data[missing]
        assert missing in rejection(ReferralWithdrawn, data)
    assert "reason" in rejection(ReferralWithdrawn, example(ReferralWithdrawn) | {"reason": "  "})
    event = ReferralWithdrawn.example()
    assert event.subject() == str(event.referral_id)


def test_a_reallocation_has_a_reason():
    data = example(CaseAllocated) | {"is_reallocation": True}
    assert "reason is required" in rejection(CaseAllocated, data)
    data["reason"] = "Lead professional on long-term leave."
    assert CaseAllocated.model_validate(data).is_reallocation


def test_panel_review_date_follows_the_decision_and_a_package_is_agreed():
    data = example(PanelDecisionRecorded) | {"review_date": "2025-04-02"}
    assert "review_date must be after" in rejection(PanelDecisionRecorded, data)
    data = example(PanelDecisionRecorded) | {"package": []}
    assert "package" in rejection(PanelDecisionRecorded, data)


def test_assessment_needs_appear_once():
    data = example(AssessmentCompleted)
    data["needs"][1]["need_id"] = data["needs"][0]["need_id"]
    assert "more than once" in rejection(AssessmentCompleted, data)


def test_assessment_no_factors_stands_alone():
    data = example(AssessmentCompleted) | {"factors": ["21", "4B"]}
    assert "cannot be combined" in rejection(AssessmentCompleted, data)


def test_plan_review_rules():
    data = example(PlanReviewed) | {"next_review_date": "2025-07-01"}
    assert "next_review_date must be after" in rejection(PlanReviewed, data)
    data = example(PlanReviewed)
    data["progress"].append(dict(data["progress"][0]))
    assert "more than once" in rejection(PlanReviewed, data)
    data = example(PlanReviewed) | {"progress": []}
    assert "progress" in rejection(PlanReviewed, data)


def test_step_up_names_factors_and_a_reachable_contact():
    data = example(CaseSteppedUp) | {"factors": []}
    assert "factors" in rejection(CaseSteppedUp, data)
    data = example(CaseSteppedUp)
    del data["social_care_contact"]["email"], data["social_care_contact"]["phone"]
    assert "email or a phone" in rejection(CaseSteppedUp, data)


def test_step_down_children_have_valid_postcodes():
    data = example(CaseSteppedDown)
    data["children"][0]["postcode"] = "NE99"
    assert "children.0.postcode" in rejection(CaseSteppedDown, data)


def test_closure_for_another_reason_explains_itself():
    data = example(CaseClosed) | {"reason": "other"}
    assert "reason_detail is required" in rejection(CaseClosed, data)
    data["reason_detail"] = "Family emigrated."
    assert CaseClosed.model_validate(data).reason == "other"


def test_closure_outcomes_mention_each_need_once():
    data = example(CaseClosed)
    data["outcomes"][2]["need_id"] = data["outcomes"][0]["need_id"]
    assert "more than once" in rejection(CaseClosed, data)


class TestDeclaringAnEventType:
    def test_a_type_name_is_taken_once(self):
        with pytest.raises(TypeError, match="already taken by"):

            class Duplicate(CaseClosed):
                event_type = "earlyhelp.case.closed.v1"

    @pytest.mark.parametrize(
        ("declaration", "message"),
        [
            ({"event_type": "case.closed", "schema_version": 1}, "is not earlyhelp"),
            ({"event_type": "earlyhelp.case.paused.v2", "schema_version": 1}, "must be 2"),
            (
                {"event_type": "earlyhelp.case.paused.v1", "schema_version": 1, "producer": "x"},
                "producer must be one of",
            ),
        ],
    )
    def test_declaration_errors(self, declaration, message):
        with pytest.raises(TypeError, match=message):
            type("Paused", (CaseClosed,), declaration)

    def test_subject_and_example_are_required(self):
        declaration = {
            "event_type": "earlyhelp.case.paused.v1",
            "schema_version": 1,
            "producer": "caseplan",
            "__annotations__": {},
        }
        with pytest.raises(TypeError, match="must define subject"):
            type("Paused", (EventData,), dict(declaration))
        with pytest.raises(TypeError, match="must document an example"):
            type("Paused", (EventData,), {**declaration, "subject": lambda self: "x"})
        assert "earlyhelp.case.paused.v1" not in EVENT_TYPES
