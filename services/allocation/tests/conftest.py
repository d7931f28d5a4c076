"""Allocation's service tests: the app on a real database, fed through the real broker."""

import time
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from allocation.service import definition
from hub.contracts.caseplan import AssessmentCompleted, CaseSteppedDown
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.testing import bearer

MANAGER, PRACTITIONER, CHAIR = "harlesden-team-manager", "samira-okafor", "brent-panel-chair"
FRONT_DOOR, SCHOOL = "front-door-demo", "harlesden-primary-school"
# Authority-wide: sees every locality's queue (the others are limited to Harlesden).
HEAD_OF_SERVICE = "early-help-service-manager"
SAMIRA = "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65"
TOMASZ = "cc56d0f1-f938-4c10-9672-9bfe316be20b"


@pytest.fixture
def allocation(service_client):
    return service_client(definition)


def as_(client, who, scopes=None):
    return bearer(client.settings, who, scopes)


def wait_until(check, timeout_s=90.0, message="condition never held"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def case_in_queue(client, case_id, status="unallocated"):
    def find():
        page = client.get(
            "/v1/allocations",
            params={"status": status, "limit": 200},
            headers=as_(client, HEAD_OF_SERVICE),
        ).json()
        return next((item for item in page["items"] if item["case_id"] == case_id), None)

    return wait_until(find, message=f"case {case_id} never reached the {status} list")


@pytest.fixture
def triaged(allocation, publish):
    """A referral received and triaged to early help: returns its case id once it is queued."""

    def make(urgency="routine", born=(date(2015, 6, 12), date(2019, 2, 3)), factors=("3B", "4B"),
             locality="brent-harlesden", decided_at=None):  # fmt: skip
        example = ReferralReceived.examples()[0]
        children = [
            {**child, "person_id": str(uuid4()), "date_of_birth": born_on.isoformat()}
            for child, born_on in zip(example["children"] * 2, born, strict=False)
        ]
        received = ReferralReceived.model_validate(
            example
            | {
                "referral_id": str(uuid4()),
                "family_id": str(uuid4()),
                "urgency": urgency,
                "children": children,
                "household_members": [],
                "concerns": {"factors": list(factors), "description": "Worries at school."},
            }
        )
        case_id = uuid4()
        publish(received)
        publish(
            ReferralTriaged.example().model_copy(
                update={
                    "referral_id": received.referral_id,
                    "family_id": received.family_id,
                    "locality": locality,
                    "case_id": case_id,
                    "decided_at": decided_at or datetime.now(UTC),
                }
            )
        )
        case_in_queue(allocation, str(case_id))
        return str(case_id)

    return make


@pytest.fixture
def stepped_down(allocation, publish):
    def make(postcode="NE28 7TH"):
        example = CaseSteppedDown.examples()[0]
        event = CaseSteppedDown.model_validate(
            example
            | {
                "case_id": str(uuid4()),
                "family_id": str(uuid4()),
                "children": [{**example["children"][0], "postcode": postcode}],
                "stepped_down_at": datetime.now(UTC).isoformat(),
            }
        )
        publish(event)
        return str(event.case_id)

    return make


@pytest.fixture
def assessed(publish):
    def make(case_id, family_id, completed_at=None):
        publish(
            AssessmentCompleted.example().model_copy(
                update={
                    # model_copy does not validate: give the fields their own types.
                    "case_id": UUID(str(case_id)),
                    "family_id": UUID(str(family_id)),
                    "assessment_id": uuid4(),
                    "completed_at": completed_at or datetime.now(UTC) - timedelta(hours=1),
                }
            )
        )

    return make
