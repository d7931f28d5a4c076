"""A referral's progress as FHIR Task and ServiceRequest: every status, pure."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from intake import fhir_status
from intake.schemas import (
    ClosureOutcome,
    PartnerReferralView,
    PartnerTriageOutcome,
    ReferralProgress,
    WithdrawalOutcome,
)

RECEIVED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DECIDED_AT = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _view(status, route=None, **parts):
    triage = (
        PartnerTriageOutcome(
            level_of_need="early_help" if route == "early_help" else "universal_plus",
            route=route,
            locality="brent-harlesden" if route == "early_help" else None,
            case_id=uuid4() if route == "early_help" else None,
            decided_at=DECIDED_AT,
        )
        if route
        else None
    )
    return PartnerReferralView(
        referral_id=uuid4(),
        status=status,
        received_at=RECEIVED_AT,
        urgency="immediate",
        referral_source="1A",
        partner_reference="HV-2026-0042",
        triage=triage,
        **parts,
    )


@pytest.mark.parametrize(
    ("view", "task_status", "request_status"),
    [
        (_view(ReferralProgress.RECEIVED), "received", "active"),
        (_view(ReferralProgress.HELD), "on-hold", "on-hold"),
        (_view(ReferralProgress.TRIAGED, "early_help"), "accepted", "active"),
        (_view(ReferralProgress.TRIAGED, "signpost_universal"), "rejected", "completed"),
        (_view(ReferralProgress.TRIAGED, "no_further_action"), "rejected", "completed"),
        (_view(ReferralProgress.TRIAGED, "social_care"), "rejected", "completed"),
        (
            _view(
                ReferralProgress.CLOSED,
                "early_help",
                closure=ClosureOutcome(closed_at=DECIDED_AT, reason="moved_out_of_area"),
            ),
            "completed",
            "completed",
        ),
        (
            _view(
                ReferralProgress.WITHDRAWN,
                withdrawal=WithdrawalOutcome(withdrawn_at=DECIDED_AT, reason="sent in error"),
            ),
            "cancelled",
            "revoked",
        ),
    ],
    ids=[
        "received",
        "held",
        "triaged-to-early-help",
        "signposted",
        "no-further-action",
        "passed-to-social-care",
        "closed",
        "withdrawn",
    ],
)
def test_each_progress_has_its_task_and_service_request_status(view, task_status, request_status):
    task = Task.model_validate(fhir_status.task(view))
    request = ServiceRequest.model_validate(fhir_status.service_request(view))

    assert task.status == task_status
    assert task.businessStatus.coding[0].code == view.status.value
    assert (task.priority, request.priority) == ("asap", "asap")
    assert request.status == request_status
    assert task.identifier[0].value == request.identifier[0].value == "HV-2026-0042"
    assert request.subject.reference is None  # nobody's record is pointed at or sent back


def test_a_closure_gives_its_reason_code_and_a_withdrawal_its_reason():
    closed = _view(
        ReferralProgress.CLOSED,
        "early_help",
        closure=ClosureOutcome(closed_at=DECIDED_AT, reason="moved_out_of_area"),
    )
    withdrawn = _view(
        ReferralProgress.WITHDRAWN,
        withdrawal=WithdrawalOutcome(withdrawn_at=DECIDED_AT, reason="sent in error"),
    )

    reason = Task.model_validate(fhir_status.task(closed)).statusReason
    assert (reason.coding[0].code, reason.text) == (
        "moved_out_of_area",
        "Family moved out of the area",
    )
    assert Task.model_validate(fhir_status.task(withdrawn)).statusReason.text == "sent in error"


def test_a_search_finds_the_task_or_nothing():
    view = _view(ReferralProgress.RECEIVED)

    found = Bundle.model_validate(fhir_status.task_search([view], "https://hub/fhir/Task"))
    empty = Bundle.model_validate(fhir_status.task_search([], "https://hub/fhir/Task"))

    assert (found.type, found.total, found.entry[0].resource.id) == (
        "searchset",
        1,
        str(view.referral_id),
    )
    assert (empty.total, empty.entry) == (0, None)
    assert fhir_status.referral_id_of(f"ServiceRequest/{view.referral_id}") == view.referral_id
    assert fhir_status.referral_id_of(str(view.referral_id)) == view.referral_id
    assert fhir_status.referral_id_of("Patient/1") is None
