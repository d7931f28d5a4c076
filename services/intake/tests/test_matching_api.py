"""Matching, re-referrals and cumulative police concern through intake's API, on the real
database and broker: families found, possible matches confirmed, rejected and undone.
"""

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from hub.contracts.caseplan import CaseClosed
from hub.testing import bearer
from intake.schemas import ReferralSubmission, TriageDecision
from intake.service import definition

EXAMPLE = ReferralSubmission.model_config["json_schema_extra"]["examples"][0]
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
SCHOOL, POLICE, STAFF = "harlesden-primary-school", "met-police-brent", "front-door-demo"
PRACTITIONER, MANAGER = "samira-okafor", "harlesden-team-manager"


@pytest.fixture
def intake(service_client):
    return service_client(definition)


def _as(client, who, scopes=None):
    return bearer(client.settings, who, scopes)


def _body(*children, **changes):
    body = copy.deepcopy(EXAMPLE)
    body["referrer"].pop("organisation_id", None)
    body["children"] = list(children) or body["children"]
    return body | changes


def _child(**changes):
    child = copy.deepcopy(EXAMPLE["children"][0]) | changes
    return {k: v for k, v in child.items() if v is not None}


def _refer(intake, body, who=SCHOOL):
    """The partner's 202, which names no family (issue 14), with the family the front door
    sees the referral in."""
    response = intake.post("/v1/referrals", json=body, headers=_as(intake, who))
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert "family_id" not in accepted
    return accepted | {"family_id": _view(intake, accepted["referral_id"])["family_id"]}


def _view(intake, referral_id, who=STAFF):
    response = intake.get(f"/v1/referrals/{referral_id}", headers=_as(intake, who))
    assert response.status_code == 200, response.text
    return response.json()


def _post(intake, path, body=None, who=STAFF):
    kwargs = {"json": body} if body is not None else {}
    return intake.post(path, headers=_as(intake, who), **kwargs)


def _triage(intake, referral_id, **changes):
    return _post(intake, f"/v1/referrals/{referral_id}/triage", DECISION | changes)


# A child the hub has not seen: numbers of its own, so only demographics can match.
UNNUMBERED = _child(nhs_number=None, upn=None, given_name="Zara", date_of_birth="2014-01-09")
MOVED = UNNUMBERED | {"address": UNNUMBERED["address"] | {"postcode": "HA0 1AA"}}


def test_the_same_child_again_joins_the_family_the_hub_knows(intake):
    first = _refer(intake, _body())
    by_upn = _refer(intake, _body(_child(nhs_number=None, given_name="Amy")))
    by_demographics = _refer(intake, _body(UNNUMBERED))
    again_by_demographics = _refer(intake, _body(UNNUMBERED | {"given_name": "ZARA"}))

    assert by_upn["family_id"] == first["family_id"]
    assert again_by_demographics["family_id"] == by_demographics["family_id"]
    assert by_demographics["family_id"] != first["family_id"]
    matching = _view(intake, by_upn["referral_id"])["matching"]
    assert matching == {
        "matched_existing_family": True,
        "re_referral_of_case_id": None,
        "possible_matches": [],
    }
    # The referrer is told what happened to its referral, not what the hub knew before.
    told = _view(intake, by_upn["referral_id"], who=SCHOOL)
    assert "matching" not in told and "family_id" not in told


def test_an_uncertain_match_waits_for_staff_and_blocks_triage_until_resolved(intake):
    known = _refer(intake, _body(UNNUMBERED))
    moved = _refer(intake, _body(MOVED))

    assert moved["family_id"] != known["family_id"]
    [match] = _view(intake, moved["referral_id"])["matching"]["possible_matches"]
    assert match["candidate_family_id"] == known["family_id"]
    assert (match["agrees_on"], match["differs_on"], match["status"]) == (
        ["given_name", "family_name", "date_of_birth"],
        ["postcode"],
        "pending",
    )
    queue = intake.get("/v1/referrals", headers=_as(intake, STAFF)).json()["items"]
    assert {i["referral_id"]: i["unresolved_matches"] for i in queue}[moved["referral_id"]] == 1

    blocked = _triage(intake, moved["referral_id"])
    assert blocked.status_code == 409
    assert blocked.json()["type"].endswith("matches-unresolved")

    rejected = _post(
        intake,
        f"/v1/referrals/{moved['referral_id']}/matches/{match['match_id']}/rejection",
        {"reason": "A different Zara: the school knows both."},
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["family_id"] == moved["family_id"]
    assert rejected.json()["matching"]["possible_matches"][0]["status"] == "rejected"
    again = _post(
        intake,
        f"/v1/referrals/{moved['referral_id']}/matches/{match['match_id']}/confirmation",
    )
    assert again.status_code == 404  # decided already: no longer pending
    assert _triage(intake, moved["referral_id"]).status_code == 200


def test_confirming_joins_the_family_and_its_open_case_and_triage_joins_that_case(intake):
    known = _refer(intake, _body(UNNUMBERED))
    opened = _triage(intake, known["referral_id"]).json()["triage"]["case_id"]
    moved = _refer(intake, _body(MOVED))
    [match] = _view(intake, moved["referral_id"])["matching"]["possible_matches"]

    confirmed = _post(
        intake, f"/v1/referrals/{moved['referral_id']}/matches/{match['match_id']}/confirmation"
    )

    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["family_id"] == known["family_id"]
    assert confirmed.json()["matching"]["re_referral_of_case_id"] == opened
    assert confirmed.json()["matching"]["matched_existing_family"] is True
    triaged = _triage(intake, moved["referral_id"]).json()["triage"]
    assert (triaged["case_id"], triaged["joins_open_case"]) == (opened, True)
    # The referrer is not told that the family already had an open case (issue 14).
    told = _view(intake, moved["referral_id"], who=SCHOOL)
    assert told["triage"]["case_id"] == opened
    assert "joins_open_case" not in told["triage"] and "family_id" not in told
    # The match now counts for sure: the next referral of the moved child joins directly.
    assert _refer(intake, _body(MOVED))["family_id"] == known["family_id"]


def test_a_wrong_match_is_undone_by_unlinking_before_triage(intake):
    known = _refer(intake, _body())
    matched = _refer(intake, _body())
    assert matched["family_id"] == known["family_id"]

    unlinked = _post(
        intake,
        f"/v1/referrals/{matched['referral_id']}/unlinking",
        {"reason": "Twins: the school sent the other child's NHS number by mistake."},
    )

    assert unlinked.status_code == 200, unlinked.text
    assert unlinked.json()["family_id"] not in {known["family_id"], matched["family_id"]}
    assert unlinked.json()["matching"]["matched_existing_family"] is False
    assert _view(intake, known["referral_id"])["family_id"] == known["family_id"]
    twice = _post(intake, f"/v1/referrals/{matched['referral_id']}/unlinking", {"reason": "Again."})
    assert twice.status_code == 409

    # Both records now hold that NHS number for two people: the next referral asks staff.
    third = _refer(intake, _body())
    assert len(_view(intake, third["referral_id"])["matching"]["possible_matches"]) == 2

    earlier = _refer(intake, _body(UNNUMBERED))
    _triage(intake, earlier["referral_id"])
    third = _refer(intake, _body(UNNUMBERED))
    assert _triage(intake, third["referral_id"]).status_code == 200
    late = _post(intake, f"/v1/referrals/{third['referral_id']}/unlinking", {"reason": "Too late."})
    assert late.status_code == 409


def test_who_may_confirm_reject_and_unlink(intake):
    known = _refer(intake, _body(UNNUMBERED))
    moved = _refer(intake, _body(MOVED))
    [match] = _view(intake, moved["referral_id"])["matching"]["possible_matches"]
    base = f"/v1/referrals/{moved['referral_id']}"
    confirm = (f"{base}/matches/{match['match_id']}/confirmation", None)
    reject = (f"{base}/matches/{match['match_id']}/rejection", {"reason": "Someone else."})
    unlink = (f"{base}/unlinking", {"reason": "Wrong family."})
    refusals = [
        (path, body, who, expected)
        for path, body in (confirm, reject, unlink)
        for who, expected in (
            (None, 401),
            (SCHOOL, 403),
            (POLICE, 403),
            (PRACTITIONER, 403),
            (MANAGER, 403),
            ((STAFF, ["referrals:read"]), 403),
        )
    ]

    wrong = []
    for path, body, who, expected in refusals:
        headers = (
            {} if who is None else _as(intake, *who) if isinstance(who, tuple) else _as(intake, who)
        )
        response = intake.post(path, headers=headers, **({"json": body} if body else {}))
        if response.status_code != expected:
            wrong.append((path, who, expected, response.status_code))
    assert wrong == []
    # Nothing refused changed anything: the match is still there for staff to decide.
    assert _post(intake, confirm[0]).status_code == 200
    assert _view(intake, moved["referral_id"])["family_id"] == known["family_id"]
    assert _post(intake, unlink[0], unlink[1]).status_code == 200


def test_matching_a_referral_to_an_unknown_match_or_referral_is_a_404(intake):
    moved = _refer(intake, _body(MOVED))
    unknown_match = _post(
        intake, f"/v1/referrals/{moved['referral_id']}/matches/{uuid4()}/confirmation"
    )
    unknown_referral = _post(intake, f"/v1/referrals/{uuid4()}/unlinking", {"reason": "Why."})
    assert unknown_match.status_code == unknown_referral.status_code == 404


def test_concurrent_referrals_of_one_new_child_make_one_family(intake):
    child = _child(nhs_number="9434765919", upn=None, given_name="Noor")
    with ThreadPoolExecutor(max_workers=4) as pool:
        accepted = list(pool.map(lambda _: _refer(intake, _body(child)), range(4)))
    assert len({a["family_id"] for a in accepted}) == 1


# --- cumulative concern ----------------------------------------------------------------


def _police_notice(intake, grade="low", child=UNNUMBERED):
    body = _body(child, referral_source="6", police_grade=grade, partner_reference=None)
    body["referrer"] = {
        "person_name": "PC Dan Morris",
        "role": "MASH police researcher",
        "email": "dan.morris@met.example.police.uk",
    }
    return _refer(intake, body, who=POLICE)


def _listed(intake, status, who=STAFF):
    response = intake.get("/v1/referrals", params={"status": status}, headers=_as(intake, who))
    assert response.status_code == 200, response.text
    return {item["referral_id"]: item for item in response.json()["items"]}


def test_the_third_low_police_notice_raises_the_family_for_triage_as_one_concern(intake):
    first, second = _police_notice(intake), _police_notice(intake)
    assert first["status"] == second["status"] == "held_for_information"
    held = _listed(intake, "held_for_information")
    assert set(held) == {first["referral_id"], second["referral_id"]}
    assert not held[first["referral_id"]]["overdue"]
    assert _listed(intake, "awaiting_triage") == {}

    third = _police_notice(intake)

    assert third["status"] == "received"
    queue = _listed(intake, "awaiting_triage")
    assert list(queue) == [third["referral_id"]]
    assert queue[third["referral_id"]]["escalating_concern"] is True
    escalating = _view(intake, third["referral_id"], who=POLICE)["police_notification"]
    assert escalating == {"grade": "low", "escalated_in": None, "escalates_notices": 2}
    earlier = _view(intake, first["referral_id"], who=POLICE)
    assert earlier["status"] == "held_for_information"
    assert earlier["police_notification"]["escalated_in"] == third["referral_id"]
    # The count starts again: the next low notice is held, not another escalation.
    assert _police_notice(intake)["status"] == "held_for_information"


def test_medium_and_high_police_notices_are_triaged_as_they_come(intake):
    assert _police_notice(intake, "medium")["status"] == "received"
    assert _police_notice(intake, "high")["status"] == "received"
    assert _police_notice(intake, "low")["status"] == "held_for_information"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"referral_source": "6"}, "is required for a police (6) notification"),
        ({"police_grade": "low"}, "is only for police (6) notifications"),
        ({"referral_source": "6", "police_grade": "amber"}, "Input should be"),
    ],
)
def test_the_police_grade_goes_with_police_notifications_only(intake, changes, message):
    response = intake.post("/v1/referrals", json=_body() | changes, headers=_as(intake, POLICE))

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "police_grade" and message in error["message"]


# --- cases from case plan ----------------------------------------------------------------


def test_a_family_referred_again_after_its_case_closed_is_a_re_referral_of_that_case(
    intake, publish
):
    known = _refer(intake, _body(UNNUMBERED))
    case_id = _triage(intake, known["referral_id"]).json()["triage"]["case_id"]
    closure = CaseClosed.example().model_copy(
        update={
            "case_id": UUID(case_id),
            "family_id": UUID(known["family_id"]),
            "closed_at": datetime.now(UTC),
            "outcomes": (),
        }
    )
    publish(closure)

    deadline = time.monotonic() + 20
    while True:
        again = _refer(intake, _body(UNNUMBERED))
        triaged = _triage(intake, again["referral_id"]).json()["triage"]
        if not triaged["joins_open_case"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert triaged["joins_open_case"] is False, "the closure never reached intake"
    assert triaged["case_id"] != case_id  # a new case, not the closed one
    assert _view(intake, again["referral_id"])["matching"]["re_referral_of_case_id"] == case_id
