"""Allocation's part of a subject access request: the family's cases and referrals only."""

from datetime import UTC, datetime
from uuid import uuid4

from hub.contracts.intake import ReferralReceived, ReferralTriaged
from tests.harness import read_table

from .conftest import HEAD_OF_SERVICE, as_, wait_until

IG = "information-governance-officer"


def _triaged(publish):
    received = ReferralReceived.example().model_copy(
        update={"referral_id": uuid4(), "family_id": uuid4()}
    )
    triaged = ReferralTriaged.example().model_copy(
        update={
            "referral_id": received.referral_id,
            "family_id": received.family_id,
            "case_id": uuid4(),
            "decided_at": datetime.now(UTC),
        }
    )
    publish(received)
    publish(triaged)
    return triaged


def test_the_family_s_case_and_referral_and_who_read_them(allocation, publish, database_url):
    mine, theirs = _triaged(publish), _triaged(publish)
    for case in (mine, theirs):
        wait_until(
            lambda case=case: (
                allocation.get(
                    f"/v1/cases/{case.case_id}/allocation", headers=as_(allocation, HEAD_OF_SERVICE)
                ).status_code
                == 200
            ),
            message="the cases never queued",
        )

    answer = allocation.get(
        f"/v1/subject-access/families/{mine.family_id}", headers=as_(allocation, IG)
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    sections = {s["name"]: s["rows"] for s in body["sections"]}
    assert [row["case_id"] for row in sections["cases"]] == [str(mine.case_id)]
    assert [row["referral_id"] for row in sections["incoming_referrals"]] == [str(mine.referral_id)]
    assert str(theirs.family_id) not in answer.text and str(theirs.case_id) not in answer.text
    readers = {(r["actor"], r["resource_type"], r["resource_id"]) for r in body["access_log"]}
    assert (HEAD_OF_SERVICE, "case", str(mine.case_id)) in readers
    assert [
        (row["action"], row["resource_type"])
        for row in read_table(database_url, "audit_log", actor=IG)
    ] == [("read", "subject_access_family")]


def test_staff_of_other_roles_are_refused(allocation):
    for client_id in (HEAD_OF_SERVICE, "samira-okafor", "hub-operator"):
        refused = allocation.get(
            f"/v1/subject-access/families/{uuid4()}", headers=as_(allocation, client_id)
        )
        assert refused.status_code == 403, client_id
