"""The information-sharing policy as configured: every partner type, every event type.

The expected field sets are written out here, independently of
config/sharing-policy.yaml, so a change to the policy file that shares more (or
less) than this agreement fails a test.
"""

import json
from pathlib import Path

import pytest

from hub.contracts.codes import DataClassification, PartnerOrganisationType
from hub.contracts.registry import EVENT_TYPES
from hub.settings import REPO_ROOT
from notifications.policy import (
    Partner,
    PolicyError,
    Relation,
    SharingPolicy,
    minimise,
    share,
)

POLICY = SharingPolicy.load(REPO_ROOT / "config" / "sharing-policy.yaml")

RECEIVED, TRIAGED, WITHDRAWN = (
    "earlyhelp.referral.received.v1",
    "earlyhelp.referral.triaged.v1",
    "earlyhelp.referral.withdrawn.v1",
)
ALLOCATED, PANEL = "earlyhelp.case.allocated.v1", "earlyhelp.panel.decision_recorded.v1"
ASSESSED, ACTION = "earlyhelp.assessment.completed.v1", "earlyhelp.plan.action_added.v1"
OUTCOME, REVIEWED = "earlyhelp.plan.outcome_agreed.v1", "earlyhelp.plan.reviewed.v1"
UP, DOWN, CLOSED = (
    "earlyhelp.case.stepped_up.v1",
    "earlyhelp.case.stepped_down.v1",
    "earlyhelp.case.closed.v1",
)

LEAD = {f"lead_professional.{f}" for f in ("name", "role", "team_name", "email", "phone")}
CONTACT = {f"social_care_contact.{f}" for f in ("name", "team", "email", "phone")}

# What a referrer hears of its own referral, whatever kind of partner it is.
AS_REFERRER = {
    RECEIVED: {"referral_id", "partner_reference", "received_at", "urgency"},
    TRIAGED: {
        "referral_id",
        "partner_reference",
        "level_of_need",
        "route",
        "locality",
        "case_id",
        "decided_at",
    },
    WITHDRAWN: {"referral_id", "partner_reference", "withdrawn_at"},
    ALLOCATED: {
        "case_id",
        "partner_reference",
        "locality",
        "team_id",
        "allocated_at",
        "is_reallocation",
    }
    | LEAD,
    PANEL: {"case_id", "partner_reference", "decided_at", "review_date"},
    ASSESSED: {"case_id", "partner_reference", "completed_at"},
    REVIEWED: {"case_id", "partner_reference", "reviewed_at", "next_review_date"},
    UP: {"case_id", "partner_reference", "stepped_up_at"},
    CLOSED: {"case_id", "partner_reference", "closed_at", "reason"},
}
ALLOCATED_DETAIL = {"case_id", "locality", "team_id", "allocated_at", "is_reallocation"} | LEAD
AS_SCHOOL_OF_A_PUPIL = {
    ALLOCATED: ALLOCATED_DETAIL,
    PANEL: {
        "case_id",
        "decided_at",
        "review_date",
        "lead_professional.name",
        "lead_professional.email",
    },
    REVIEWED: {"case_id", "reviewed_at", "next_review_date"},
    UP: {"case_id", "stepped_up_at"},
    CLOSED: {"case_id", "closed_at", "reason"},
}
TRIAGE_DETAIL = {"referral_id", "case_id", "level_of_need", "route", "locality", "decided_at"}
LEAD_CONTACT = {f"lead_professional.{f}" for f in ("name", "role", "email", "phone")}
HEALTH_WITH_CONSENT = {
    TRIAGED: TRIAGE_DETAIL,
    ALLOCATED: ALLOCATED_DETAIL,
    PANEL: {
        "case_id",
        "decided_at",
        "review_date",
        "package[].service",
        "package[].provider_id",
        "package[].start_date",
        "package[].intensity",
    }
    | LEAD_CONTACT,
    ASSESSED: {
        "case_id",
        "assessment_id",
        "completed_at",
        "factors",
        "recommended_level_of_need",
        "needs[].need_id",
        "needs[].outcome",
    },
    ACTION: {"case_id", "action_id", "need_id", "who", "by_when"},
    OUTCOME: {"case_id", "need_id", "outcome", "agreed_at"},
    REVIEWED: {
        "case_id",
        "review_id",
        "reviewed_at",
        "next_review_date",
        "progress[].need_id",
        "progress[].rating",
    },
    UP: {"case_id", "stepped_up_at", "factors"} | CONTACT,
    DOWN: {"case_id", "stepped_down_at", "locality"},
    CLOSED: {
        "case_id",
        "closed_at",
        "reason",
        "outcomes[].need_id",
        "outcomes[].outcome",
        "outcomes[].achieved",
    },
}
POLICE_WITH_CONSENT = {
    TRIAGED: TRIAGE_DETAIL,
    ALLOCATED: ALLOCATED_DETAIL,
    PANEL: {"case_id", "decided_at", "review_date"} | LEAD_CONTACT,
    ASSESSED: {
        "case_id",
        "assessment_id",
        "completed_at",
        "factors",
        "recommended_level_of_need",
    },
    UP: {"case_id", "stepped_up_at", "factors"} | CONTACT,
    DOWN: {"case_id", "stepped_down_at", "locality"},
    CLOSED: {"case_id", "closed_at", "reason"},
}
SOCIAL_CARE_WITH_CONSENT = HEALTH_WITH_CONSENT | {
    DOWN: {"case_id", "social_care_reference", "stepped_down_at", "locality"}
}

T = PartnerOrganisationType
WITH_CONSENT = {
    T.HEALTH: HEALTH_WITH_CONSENT,
    T.POLICE: POLICE_WITH_CONSENT,
    T.SOCIAL_CARE: SOCIAL_CARE_WITH_CONSENT,
}
RELATIONS = {
    "unrelated": Relation(),
    "referrer": Relation(referrer=True, partner_reference="OWN-REF-1"),
    "school_of_child": Relation(school_of_child=True),
    "team_member_with_consent": Relation(team_member_with_consent=True),
}


def expected(kind: PartnerOrganisationType, relation: str, event_type: str) -> set[str] | None:
    table = {
        "unrelated": {},
        "referrer": AS_REFERRER,
        "school_of_child": AS_SCHOOL_OF_A_PUPIL if kind is T.SCHOOL else {},
        "team_member_with_consent": WITH_CONSENT.get(kind, {}),
    }[relation]
    return table.get(event_type)


def leaf_paths(value, prefix="") -> set[str]:
    if isinstance(value, dict):
        return set().union(*(leaf_paths(v, f"{prefix}{k}.") for k, v in value.items()))
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return set().union(*(leaf_paths(item, prefix[:-1] + "[].") for item in value))
    return {prefix[:-1]}


def example(event_type: str) -> dict:
    return EVENT_TYPES[event_type].example().model_dump(mode="json")


PERSONAL = (
    "Amira",
    "Hassan",
    "Leila",
    "9990000018",
    "G304200119123",
    "Craven Park",
    "Kai",
    "Robson",
    "Jo Adeyemi",
    "low mood",
)


@pytest.mark.parametrize("relation", sorted(RELATIONS))
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@pytest.mark.parametrize("kind", list(T), ids=str)
def test_each_partner_type_gets_exactly_its_allowed_fields(kind, event_type, relation):
    shared = share(
        POLICY, Partner("some-partner", kind), event_type, example(event_type), RELATIONS[relation]
    )
    allowed = expected(kind, relation, event_type)
    if allowed is None:
        assert shared is None
        return
    assert shared is not None
    assert leaf_paths(shared.data) == allowed
    text = json.dumps(shared.data)
    assert not [word for word in PERSONAL if word in text]
    if relation == "referrer":
        assert shared.data["partner_reference"] == "OWN-REF-1"


def test_a_family_s_own_words_never_leave_with_the_assessment():
    shared = share(
        POLICY,
        Partner("brent-health-visiting", T.HEALTH),
        ASSESSED,
        example(ASSESSED),
        Relation(referrer=True, team_member_with_consent=True, partner_reference="R"),
    )
    assert "people" not in shared.data and "views" not in shared.data
    assert "description" not in json.dumps(shared.data)


def test_labels_follow_the_strictest_matching_rule():
    health = Partner("brent-health-visiting", T.HEALTH)
    alone = share(POLICY, health, ALLOCATED, example(ALLOCATED), RELATIONS["referrer"])
    both = share(
        POLICY,
        health,
        ALLOCATED,
        example(ALLOCATED),
        Relation(referrer=True, team_member_with_consent=True, partner_reference="R"),
    )
    assert alone.classification is DataClassification.CONFIDENTIAL
    assert alone.category == "referral-status"
    assert both.classification is DataClassification.RESTRICTED
    assert both.category == "case-detail,referral-status"


def test_payloads_are_built_from_the_allow_list_not_cut_from_the_event():
    event = example(CLOSED) | {"a_field_added_later": "never shared unless the policy says so"}
    shared = share(
        POLICY, Partner("p", T.HEALTH), CLOSED, event, RELATIONS["team_member_with_consent"]
    )
    assert "a_field_added_later" not in shared.data
    assert minimise({"a": {"b": 1, "c": 2}, "d": [{"e": 1, "f": 2}]}, ["a.b", "d[].f"]) == {
        "a": {"b": 1},
        "d": [{"f": 2}],
    }


def _policy(tmp_path: Path, text: str) -> SharingPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return SharingPolicy.load(path)


RULE = """
    - when: {when}
      classification: restricted
      category: case-detail
      events:
        {event}: [{fields}]
"""


@pytest.mark.parametrize(
    ("when", "event", "fields", "reason"),
    [
        ("team_member_with_consent", CLOSED, "case_id, not_a_field", "not in the event"),
        ("team_member_with_consent", ALLOCATED, "lead_professional", "is an object"),
        ("team_member_with_consent", "earlyhelp.case.invented.v1", "case_id", "unknown event type"),
        ("team_member_with_consent", CLOSED, "partner_reference", "not in the event"),
        ("team_member_with_consent", CLOSED, '"case_id[]"', "not a list"),
        ("nobody", CLOSED, "case_id", "when"),
    ],
)
def test_a_policy_that_cannot_be_enforced_is_refused(tmp_path, when, event, fields, reason):
    text = "all_partners:" + RULE.format(when=when, event=event, fields=fields)
    with pytest.raises(PolicyError, match=reason):
        _policy(tmp_path, text)


def test_a_partner_of_its_own_adds_to_or_replaces_its_type_s_rules(tmp_path):
    policy = _policy(
        tmp_path,
        "partner_types:\n  police:"
        + RULE.format(when="team_member_with_consent", event=CLOSED, fields="case_id, reason")
        + "partners:\n  met-police-brent:\n    rules:"
        + RULE.format(when="team_member_with_consent", event=REVIEWED, fields="case_id").replace(
            "\n    ", "\n        "
        )
        + "  city-police:\n    inherit: false\n    rules: []\n",
    )
    consent = RELATIONS["team_member_with_consent"]
    met, city = Partner("met-police-brent", T.POLICE), Partner("city-police", T.POLICE)
    assert share(policy, met, REVIEWED, example(REVIEWED), consent).data == {
        "case_id": example(REVIEWED)["case_id"]
    }
    assert share(policy, met, CLOSED, example(CLOSED), consent) is not None
    assert share(policy, city, CLOSED, example(CLOSED), consent) is None
    assert policy.may_ever_receive(met, REVIEWED) and not policy.may_ever_receive(city, CLOSED)


def test_what_the_disclosure_record_keeps_is_what_only_restricted_rules_let_out():
    from notifications.fanout import Allowed

    health = Partner("brent-health-visiting", T.HEALTH)
    member = Relation(
        referrer=True, team_member_with_consent=True, partner_reference="R", basis="override"
    )
    both = share(POLICY, health, ASSESSED, example(ASSESSED), member)
    assert set(both.restricted_paths) == HEALTH_WITH_CONSENT[ASSESSED]
    assert both.restricted_rules == ("team_member_with_consent/case-detail",)
    assert Allowed("{}", both, member).disclosure()["basis"] == "override"
    # What a referrer hears of its own referral is not restricted: nothing to record.
    alone = share(POLICY, health, ASSESSED, example(ASSESSED), RELATIONS["referrer"])
    assert alone.restricted_paths == () and alone.restricted_rules == ()
    assert Allowed("{}", alone, RELATIONS["referrer"]).disclosure() is None


def test_the_journal_keeps_the_union_of_every_rule_s_fields():
    assert (
        set(POLICY.journal_paths(ASSESSED))
        == (AS_REFERRER[ASSESSED] - {"partner_reference"})
        | HEALTH_WITH_CONSENT[ASSESSED]
        | POLICE_WITH_CONSENT[ASSESSED]
    )
    assert POLICY.journal_paths("earlyhelp.case.team_member_added.v1") == ()
