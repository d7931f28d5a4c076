"""Case plan's part of a subject access request: the family's records only, audited."""

import time
from datetime import UTC, datetime
from uuid import uuid4

from caseplan.service import definition
from hub.contracts.allocation import CaseAllocated
from hub.contracts.intake import ReferralReceived
from hub.testing import bearer
from tests.harness import read_table

IG = "information-governance-officer"
HEAD = "early-help-service-manager"


def _wait(check, what, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


def test_the_family_s_case_referrals_chronology_and_readers_and_nothing_else(
    service_client, publish, database_url
):
    caseplan = service_client(definition)
    ig, head = bearer(caseplan.settings, IG), bearer(caseplan.settings, HEAD)
    family, other_family = uuid4(), uuid4()
    referral = ReferralReceived.example().model_copy(
        update={"family_id": family, "referral_id": uuid4()}
    )
    other = ReferralReceived.example().model_copy(
        update={"family_id": other_family, "referral_id": uuid4()}
    )
    case = CaseAllocated.example().model_copy(
        update={"family_id": family, "case_id": uuid4(), "allocated_at": datetime.now(UTC)}
    )
    for event in (referral, other, case):
        publish(event)
    _wait(lambda: caseplan.get(f"/v1/cases/{case.case_id}", headers=head).status_code == 200,
          "the case")  # fmt: skip
    _wait(lambda: caseplan.get(f"/v1/families/{other_family}/chronology", headers=head)
          .status_code == 200, "the other family's chronology")  # fmt: skip
    # A draft assessment: case plan's own event store has nothing yet, its drafts table does.
    assert caseplan.post(f"/v1/cases/{case.case_id}/assessments", json={}, headers=head).is_success

    answer = caseplan.get(f"/v1/subject-access/families/{family}", headers=ig)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["service"] == "caseplan" and body["family_id"] == str(family)
    sections = {section["name"]: section["rows"] for section in body["sections"]}
    assert [row["case_id"] for row in sections["cases"]] == [str(case.case_id)]
    assert sections["cases"][0]["detail"]["assessment"] is None  # detail decoded, not text
    assert [row["referral_id"] for row in sections["referrals"]] == [str(referral.referral_id)]
    assert [row["case_id"] for row in sections["assessment_drafts"]] == [str(case.case_id)]
    assert {row["subject"] for row in sections["chronology"]} == {
        str(referral.referral_id),
        str(case.case_id),
    }
    assert str(other_family) not in answer.text and str(other.referral_id) not in answer.text
    # Who read the case before: the head of service, on record.
    readers = {(r["actor"], r["resource_type"], r["resource_id"]) for r in body["access_log"]}
    assert (HEAD, "case", str(case.case_id)) in readers

    # The request itself is on record, under the officer's name.
    audited = read_table(database_url, "audit_log", actor=IG)
    assert [(row["action"], row["resource_type"], row["resource_id"]) for row in audited] == [
        ("read", "subject_access_family", str(family))
    ]


def test_only_information_governance_may_ask_and_a_refusal_is_audited(service_client, database_url):
    caseplan = service_client(definition)
    family = uuid4()
    for client_id in (HEAD, "front-door-demo", "hub-operator", "brent-childrens-social-care"):
        refused = caseplan.get(
            f"/v1/subject-access/families/{family}", headers=bearer(caseplan.settings, client_id)
        )
        assert refused.status_code == 403, (client_id, refused.text)
    assert {row["action"] for row in read_table(database_url, "audit_log", actor=HEAD)} == {
        "refused"
    }
    # A family case plan knows nothing about: an empty answer, not a 404.
    empty = caseplan.get(
        f"/v1/subject-access/families/{family}", headers=bearer(caseplan.settings, IG)
    )
    assert empty.status_code == 200
    assert empty.json()["events"] == [] and all(not s["rows"] for s in empty.json()["sections"])
