"""A referral's progress in FHIR R4: the `Task` a health system follows, and the
`ServiceRequest` it sent, read back.

BaRS and BSeR model a referral's progress as a `Task` whose `basedOn` is the
`ServiceRequest` and whose `status` the receiver moves on. Both are built from the
referrer's own view of its referral (`PartnerReferralView`, what `GET
/v1/referrals/{id}` answers), so a FHIR client learns exactly what the JSON API and
the referrer's webhooks tell it, under the same sharing rule, and nothing about the
family: no Patient, no family id, no other child.

| the hub's progress                    | Task.status  | ServiceRequest.status |
|---------------------------------------|--------------|-----------------------|
| received                              | received     | active                |
| held_for_information                  | on-hold      | on-hold               |
| triaged to early help                 | accepted     | active                |
| triaged elsewhere (signposted, no further action, social care) | rejected | completed |
| allocated                             | in-progress  | active                |
| closed                                | completed    | completed             |
| withdrawn                             | cancelled    | revoked               |

Pure: no HTTP, no database.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from hub.contracts.codes import ClosureReason, TriageRoute, Urgency
from intake.fhir_mapping import HUB_FHIR
from intake.schemas import PartnerReferralView, ReferralProgress

PROGRESS_SYSTEM = f"{HUB_FHIR}/CodeSystem/referral-progress"
ROUTE_SYSTEM = f"{HUB_FHIR}/CodeSystem/triage-route"
LEVEL_OF_NEED_SYSTEM = f"{HUB_FHIR}/CodeSystem/level-of-need"
CLOSURE_REASON_SYSTEM = f"{HUB_FHIR}/CodeSystem/closure-reason"
PARTNER_REFERENCE_SYSTEM = f"{HUB_FHIR}/Id/partner-reference"

_PROGRESS_LABELS = {
    ReferralProgress.RECEIVED: "Received by the front door",
    ReferralProgress.HELD: "Held for information (a low-graded police notification)",
    ReferralProgress.TRIAGED: "Triaged by the front door",
    ReferralProgress.ALLOCATED: "Allocated to a lead professional",
    ReferralProgress.CLOSED: "The early help case has closed",
    ReferralProgress.WITHDRAWN: "Withdrawn by the referrer",
}
# FHIR request-priority for each urgency: the reverse of the concept map's reading
# (asap and stat both read as immediate; asap is what the front door answers).
_PRIORITY = {Urgency.ROUTINE: "routine", Urgency.URGENT: "urgent", Urgency.IMMEDIATE: "asap"}


def _triaged_elsewhere(view: PartnerReferralView) -> bool:
    return view.triage is not None and view.triage.route is not TriageRoute.EARLY_HELP


def task_status(view: PartnerReferralView) -> str:
    """Task.status for the referral's progress (the table above)."""
    if view.status is ReferralProgress.TRIAGED and _triaged_elsewhere(view):
        return "rejected"
    return {
        ReferralProgress.RECEIVED: "received",
        ReferralProgress.HELD: "on-hold",
        ReferralProgress.TRIAGED: "accepted",
        ReferralProgress.ALLOCATED: "in-progress",
        ReferralProgress.CLOSED: "completed",
        ReferralProgress.WITHDRAWN: "cancelled",
    }[view.status]


def _service_request_status(view: PartnerReferralView) -> str:
    if view.status is ReferralProgress.TRIAGED and _triaged_elsewhere(view):
        return "completed"
    return {
        ReferralProgress.HELD: "on-hold",
        ReferralProgress.CLOSED: "completed",
        ReferralProgress.WITHDRAWN: "revoked",
    }.get(view.status, "active")


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _last_modified(view: PartnerReferralView) -> str:
    moments = [view.received_at]
    if view.triage is not None:
        moments.append(view.triage.decided_at)
    if view.allocation is not None:
        moments.append(view.allocation.allocated_at)
    if view.closure is not None:
        moments.append(view.closure.closed_at)
    if view.withdrawal is not None:
        moments.append(view.withdrawal.withdrawn_at)
    return max(moments).isoformat()


def _identifiers(view: PartnerReferralView) -> list[dict[str, Any]]:
    if view.partner_reference is None:
        return []
    return [{"system": PARTNER_REFERENCE_SYSTEM, "value": view.partner_reference}]


def _outputs(view: PartnerReferralView) -> list[dict[str, Any]]:
    """The front door's decision, each part a Task.output."""
    triage = view.triage
    if triage is None:
        return []
    outputs = [
        {
            "type": {"text": "level of need"},
            "valueCodeableConcept": _coding(
                LEVEL_OF_NEED_SYSTEM, triage.level_of_need.value, triage.level_of_need.label
            ),
        },
        {
            "type": {"text": "route"},
            "valueCodeableConcept": _coding(ROUTE_SYSTEM, triage.route.value, triage.route.label),
        },
    ]
    if triage.locality is not None:
        outputs.append({"type": {"text": "locality"}, "valueString": triage.locality})
    if triage.case_id is not None:
        outputs.append({"type": {"text": "case id"}, "valueString": str(triage.case_id)})
    return outputs


def _lead_professional(view: PartnerReferralView) -> tuple[list[dict[str, Any]], dict | None]:
    """The lead professional as contained Practitioner and PractitionerRole, and the
    Task's owner (the role), once the case is allocated."""
    if view.allocation is None:
        return [], None
    lead = view.allocation.lead_professional
    telecom = [
        {"system": system, "value": value, "use": "work"}
        for system, value in (("email", lead.email), ("phone", lead.phone))
        if value is not None
    ]
    practitioner = {"resourceType": "Practitioner", "id": "lead", "name": [{"text": lead.name}]}
    role = {
        "resourceType": "PractitionerRole",
        "id": "lead-role",
        "practitioner": {"reference": "#lead", "display": lead.name},
        "code": [{"text": lead.role}],
        "specialty": [{"text": lead.team}],
        "telecom": telecom,
    }
    return [practitioner, role], {"reference": "#lead-role", "display": lead.name}


def _status_reason(view: PartnerReferralView) -> dict[str, Any] | None:
    if view.closure is not None:
        reason = ClosureReason(view.closure.reason)
        return _coding(CLOSURE_REASON_SYSTEM, reason.value, reason.label)
    if view.withdrawal is not None:
        return {"text": view.withdrawal.reason}
    return None


def task(view: PartnerReferralView) -> dict[str, Any]:
    """The referral's Task: its id is the referral's, `basedOn` its ServiceRequest."""
    contained, owner = _lead_professional(view)
    progress = view.status
    business_status = _coding(PROGRESS_SYSTEM, progress.value, _PROGRESS_LABELS[progress])
    resource = Task.model_validate(
        {
            "resourceType": "Task",
            "id": str(view.referral_id),
            "meta": {"lastUpdated": _last_modified(view)},
            "contained": contained or None,
            "identifier": _identifiers(view) or None,
            "basedOn": [{"reference": f"ServiceRequest/{view.referral_id}"}],
            "focus": {"reference": f"ServiceRequest/{view.referral_id}"},
            "status": task_status(view),
            "statusReason": _status_reason(view),
            "businessStatus": business_status,
            "intent": "order",
            "priority": _PRIORITY[Urgency(view.urgency)],
            "authoredOn": view.received_at.isoformat(),
            "lastModified": _last_modified(view),
            "owner": owner,
            "output": _outputs(view) or None,
        }
    )
    return resource.model_dump(mode="json", exclude_none=True)


def service_request(view: PartnerReferralView) -> dict[str, Any]:
    """The referral as the hub holds it for its referrer: status, priority and dates, and
    nothing about the people (the referrer has them; the hub does not send them back)."""
    resource = ServiceRequest.model_validate(
        {
            "resourceType": "ServiceRequest",
            "id": str(view.referral_id),
            "meta": {"lastUpdated": _last_modified(view)},
            "identifier": _identifiers(view) or None,
            "status": _service_request_status(view),
            "intent": "order",
            "priority": _PRIORITY[Urgency(view.urgency)],
            "subject": {"type": "Patient", "display": "The children referred"},
            "authoredOn": view.received_at.isoformat(),
        }
    )
    return resource.model_dump(mode="json", exclude_none=True)


def task_search(views: list[PartnerReferralView], self_link: str) -> dict[str, Any]:
    """A searchset Bundle of the Tasks found: none when the referral is not the caller's."""
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(views),
            "link": [{"relation": "self", "url": self_link}],
            "entry": [
                {
                    "fullUrl": f"Task/{view.referral_id}",
                    "resource": task(view),
                    "search": {"mode": "match"},
                }
                for view in views
            ]
            or None,
        }
    )
    return bundle.model_dump(mode="json", exclude_none=True)


def referral_id_of(based_on: str) -> UUID | None:
    """The referral a `based-on` search names: `ServiceRequest/{id}`, or the bare id."""
    reference = based_on.removeprefix("ServiceRequest/")
    try:
        return UUID(reference)
    except ValueError:
        return None
