"""FHIR R4 referrals read into the JSON API's `ReferralSubmission`, and the answers back.

A health system's referral (a message Bundle, or a ServiceRequest with its people
contained) is parsed with the `fhir.resources` models, then read into the very
`ReferralSubmission` that `POST /v1/referrals` takes, so that the one command
validates, matches and records it. Every refusal names the FHIR element at fault
by its FHIRPath (`Bundle.entry[2].resource.birthDate`), never the value.

The models are `fhir.resources.R4B`: the 8.x releases (the ones built on pydantic
v2, as the hub is) ship R5 by default and R4B (4.3.0) beside it, and no plain R4.
R4B is R4's technical correction: the resources read here (Bundle, MessageHeader,
ServiceRequest, Patient, RelatedPerson, Practitioner, PractitionerRole,
Organization, Consent, OperationOutcome, CapabilityStatement) are the same on the
wire, so an R4 (4.0.1) message validates as it is.

Pure: no HTTP, no database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from hub.contracts.codes import PartnerOrganisationType, ReferralSource
from hub.refusals import Invalid, RefusedField
from hub.yaml_files import load_yaml
from intake.domain import ReferralStatus
from intake.schemas import ReferralAccepted, ReferralSubmission

FHIR_MEDIA_TYPE = "application/fhir+json"
FHIR_VERSION = "4.0.1"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
HUB_FHIR = "https://earlyhelp.example/fhir"
MESSAGE_EVENT_SYSTEM = f"{HUB_FHIR}/CodeSystem/message-event"
REFERRAL_EVENT = "referral-request"
CONSENT_SCOPE_SYSTEM = f"{HUB_FHIR}/CodeSystem/consent-scope"
PARENTAL_RESPONSIBILITY = f"{HUB_FHIR}/StructureDefinition/parental-responsibility"
SAFEGUARDING_OVERRIDE = f"{HUB_FHIR}/StructureDefinition/safeguarding-override"
CONCEPT_MAP = Path(__file__).with_name("fhir_concept_map.yaml")

# What a referral message may carry: anything else is refused, not ignored.
MESSAGE_RESOURCES = (
    "MessageHeader",
    "ServiceRequest",
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Consent",
)
CONTAINED_RESOURCES = MESSAGE_RESOURCES[1:]


class FhirInvalid(Invalid):
    """A FHIR referral that cannot be read: every element at fault, by its FHIRPath."""

    problem = "fhir-validation-error"
    title = "Invalid FHIR referral"


def _refuse(errors: Iterable[RefusedField]) -> FhirInvalid:
    errors = list(errors)
    noun = "element is" if len(errors) == 1 else "elements are"
    return FhirInvalid(f"{len(errors)} {noun} invalid; see the issues.", errors=errors)


# --- the concept map --------------------------------------------------------------


@dataclass(frozen=True)
class ConceptMapping:
    system: str
    code: str
    target: str
    meaning: str


@cache
def concept_map() -> dict[str, dict[tuple[str, str], ConceptMapping]]:
    """The concept map file, by group, then by (system, code)."""
    raw = load_yaml(CONCEPT_MAP.read_text())
    return {
        group: {(e["system"], e["code"]): ConceptMapping(**e) for e in entries}
        for group, entries in raw.items()
    }


def translate(group: str, system: str | None, code: str | None) -> str | None:
    """The hub code a coding maps to in `group`, or None where the map names none."""
    found = concept_map()[group].get((system or "", code or ""))
    return found.target if found else None


# --- reading a referral -----------------------------------------------------------


@dataclass
class _Located:
    """A parsed resource and where it is in the request."""

    resource: Any
    path: str


@dataclass
class _Reading:
    """The resources of one request, the errors found so far, and where each field came from."""

    by_reference: dict[str, _Located]
    errors: list[RefusedField] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)

    def error(self, path: str, message: str, code: str) -> None:
        self.errors.append(RefusedField(path, message, code))

    def where(self, location: Iterable[Any]) -> str:
        """The FHIRPath of the element a field of the submission was read from."""
        path = _json_path(location)
        while path not in self.origin:
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                return self.origin[""]
            path = path[:cut]
        return self.origin[path]

    def resolve(self, reference: Any, path: str, *types: str) -> _Located | None:
        target = getattr(reference, "reference", None) if reference is not None else None
        found = self.by_reference.get(target or "")
        if found is None or found.resource.get_resource_type() not in types:
            self.error(
                path,
                f"must reference a {' or '.join(types)} in this request",
                "reference_unresolved",
            )
            return None
        return found


def read_message(body: Any, scope_organisation_type: str | None) -> ReferralSubmission:
    """A referral message Bundle (`$process-message`) as the JSON API's submission."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise _refuse([RefusedField("Bundle", "must be a Bundle of type message", "resource_type")])
    entries = body.get("entry")
    if body.get("type") != "message":
        raise _refuse([RefusedField("Bundle.type", "must be message", "code_invalid")])
    if not isinstance(entries, list) or not entries:
        raise _refuse([RefusedField("Bundle.entry", "must hold the message", "required")])
    reading = _Reading({})
    parsed: list[_Located] = []
    for index, entry in enumerate(entries):
        path = f"Bundle.entry[{index}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        located = _parse(reading, resource, path, MESSAGE_RESOURCES)
        if located is None:
            continue
        parsed.append(located)
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            reading.by_reference[full_url] = located
        if located.resource.id:
            reading.by_reference[
                f"{located.resource.get_resource_type()}/{located.resource.id}"
            ] = located
    if reading.errors:
        raise _refuse(reading.errors)
    header = parsed[0]
    if header.resource.get_resource_type() != "MessageHeader":
        raise _refuse([RefusedField(header.path, "must be the MessageHeader", "resource_type")])
    event = header.resource.eventCoding
    if event is None or (event.system, event.code) != (MESSAGE_EVENT_SYSTEM, REFERRAL_EVENT):
        raise _refuse(
            [
                RefusedField(
                    f"{header.path}.eventCoding",
                    f"must be {REFERRAL_EVENT} in {MESSAGE_EVENT_SYSTEM}",
                    "code_invalid",
                )
            ]
        )
    return _read(reading, parsed[1:], scope_organisation_type)


def read_service_request(body: Any, scope_organisation_type: str | None) -> ReferralSubmission:
    """A ServiceRequest, with its people and referrer contained, as the JSON API's submission."""
    reading = _Reading({})
    if not isinstance(body, dict):
        raise _refuse([RefusedField("ServiceRequest", "must be a ServiceRequest", "type")])
    contained = body.get("contained") or []
    request = _parse(reading, body, "ServiceRequest", ("ServiceRequest",))
    if request is None:
        raise _refuse(reading.errors)
    parsed = [request]
    for index, resource in enumerate(contained if isinstance(contained, list) else []):
        path = f"ServiceRequest.contained[{index}]"
        located = _parse(reading, resource, path, CONTAINED_RESOURCES)
        if located is not None and located.resource.id:
            reading.by_reference[f"#{located.resource.id}"] = located
            parsed.append(located)
    if reading.errors:
        raise _refuse(reading.errors)
    return _read(reading, parsed, scope_organisation_type)


def _parse(
    reading: _Reading, resource: Any, path: str, allowed: tuple[str, ...]
) -> _Located | None:
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind not in allowed:
        reading.error(path, f"must be one of {', '.join(allowed)}", "resource_type")
        return None
    try:
        model = get_fhir_model_class(kind).model_validate(resource)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        if not isinstance(exc, ValidationError):
            reading.error(path, "is not a valid resource of its type", "invalid")
            return None
        for error in exc.errors(include_input=False):
            reading.error(_fhirpath(path, error["loc"]), str(error["msg"]), error["type"])
        return None
    return _Located(model, path)


def _fhirpath(path: str, location: Iterable[Any]) -> str:
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith("function-"):
            path += f".{part}"
    return path


def _read(
    reading: _Reading, resources: list[_Located], organisation_type: str | None
) -> ReferralSubmission:
    requests = [r for r in resources if r.resource.get_resource_type() == "ServiceRequest"]
    if len(requests) != 1:
        where = resources[0].path.rsplit("[", 1)[0] if resources else "Bundle.entry"
        raise _refuse([RefusedField(where, "must hold exactly one ServiceRequest", "cardinality")])
    [request] = requests
    service_request = request.resource
    at = request.path
    data: dict[str, Any] = {}
    reading.origin[""] = at

    patients = [r for r in resources if r.resource.get_resource_type() == "Patient"]
    subject = reading.resolve(service_request.subject, f"{at}.subject", "Patient")
    if subject is not None:
        # The subject first; every other Patient of the message is a sibling referred with it.
        patients = [subject] + [p for p in patients if p is not subject]
    data["children"] = [_child(reading, p, f"children[{i}]") for i, p in enumerate(patients)]
    reading.origin["children"] = f"{at}.subject"
    members = [r for r in resources if r.resource.get_resource_type() == "RelatedPerson"]
    data["household_members"] = [
        _member(reading, m, f"household_members[{i}]") for i, m in enumerate(members)
    ]

    data["urgency"] = _priority(reading, service_request, at)
    data["concerns"] = _concerns(reading, service_request, at)
    data["partner_reference"] = _partner_reference(service_request)
    requester = _referrer(reading, service_request, at)
    data["referrer"] = requester[0] if requester else None
    data["referral_source"] = _referral_source(reading, requester, at, organisation_type)
    consents = [r for r in resources if r.resource.get_resource_type() == "Consent"]
    data["consent"] = _consent(reading, consents[0]) if consents else None
    data["safeguarding_override"] = _override(reading, service_request, at, requester)
    if reading.errors:
        raise _refuse(reading.errors)
    try:
        return ReferralSubmission.model_validate(data)
    except ValidationError as exc:
        raise _refuse(
            RefusedField(reading.where(error["loc"]), str(error["msg"]), error["type"])
            for error in exc.errors(include_input=False)
        ) from None


def _json_path(location: Iterable[Any]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _iso(value: date | datetime | str | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def _name(reading: _Reading, resource: _Located, key: str) -> tuple[str | None, str | None]:
    names = resource.resource.name or []
    if not names:
        reading.error(f"{resource.path}.name", "is required", "required")
        return None, None
    name = names[0]
    reading.origin[f"{key}.given_name"] = f"{resource.path}.name[0].given"
    reading.origin[f"{key}.family_name"] = f"{resource.path}.name[0].family"
    return " ".join(name.given or []) or None, name.family


def _nhs_number(reading: _Reading, patient: _Located, key: str) -> str | None:
    for index, identifier in enumerate(patient.resource.identifier or []):
        if identifier.system == NHS_NUMBER_SYSTEM:
            reading.origin[f"{key}.nhs_number"] = f"{patient.path}.identifier[{index}].value"
            return identifier.value
        if (
            identifier.system is None
            and identifier.value
            and re.fullmatch(r"[0-9 ]{10,12}", identifier.value)
        ):
            reading.error(
                f"{patient.path}.identifier[{index}].system",
                f"is required: an NHS number has the system {NHS_NUMBER_SYSTEM}",
                "required",
            )
    return None


def _child(reading: _Reading, patient: _Located, key: str) -> dict[str, Any]:
    reading.origin[key] = patient.path
    given, family = _name(reading, patient, key)
    reading.origin[f"{key}.date_of_birth"] = f"{patient.path}.birthDate"
    addresses = patient.resource.address or []
    address: dict[str, Any] | None = None
    if addresses:
        first = addresses[0]
        at = f"{patient.path}.address[0]"
        reading.origin[f"{key}.address"] = at
        reading.origin[f"{key}.address.lines"] = f"{at}.line"
        reading.origin[f"{key}.address.town"] = f"{at}.city"
        reading.origin[f"{key}.address.postcode"] = f"{at}.postalCode"
        address = {
            "lines": list(first.line or []),
            "town": first.city,
            "postcode": first.postalCode,
        }
    else:
        reading.origin[f"{key}.address"] = f"{patient.path}.address"
    return {
        "given_name": given,
        "family_name": family,
        "date_of_birth": _iso(patient.resource.birthDate),
        "nhs_number": _nhs_number(reading, patient, key),
        "address": address,
    }


def _extension(resource: Any, url: str) -> tuple[int, Any] | None:
    for index, extension in enumerate(resource.extension or []):
        if extension.url == url:
            return index, extension
    return None


def _coding_in(reading: _Reading, group: str, codeable: Any, path: str, what: str) -> str | None:
    codings = list(getattr(codeable, "coding", None) or [])
    for coding in codings:
        target = translate(group, coding.system, coding.code)
        if target is not None:
            return target
    reading.error(
        f"{path}.coding" if codings else path,
        f"no coding maps to {what} (see the concept map in docs/fhir.md)",
        "code_unknown",
    )
    return None


def _member(reading: _Reading, person: _Located, key: str) -> dict[str, Any]:
    reading.origin[key] = person.path
    given, family = _name(reading, person, key)
    reading.origin[f"{key}.date_of_birth"] = f"{person.path}.birthDate"
    relationships = person.resource.relationship or []
    reading.origin[f"{key}.relationship"] = f"{person.path}.relationship"
    relationship = (
        _coding_in(
            reading,
            "relationship",
            relationships[0],
            f"{person.path}.relationship[0]",
            "a household relationship",
        )
        if relationships
        else None
    )
    responsibility = _extension(person.resource, PARENTAL_RESPONSIBILITY)
    reading.origin[f"{key}.parental_responsibility"] = (
        f"{person.path}.extension[{responsibility[0]}].valueBoolean"
        if responsibility
        else f"{person.path}.extension"
    )
    return {
        "given_name": given,
        "family_name": family,
        "relationship": relationship,
        "date_of_birth": _iso(person.resource.birthDate),
        "parental_responsibility": responsibility[1].valueBoolean if responsibility else None,
    }


def _priority(reading: _Reading, request: Any, at: str) -> str | None:
    reading.origin["urgency"] = f"{at}.priority"
    if request.priority is None:
        return None  # the submission names it missing
    target = translate("priority", "http://hl7.org/fhir/request-priority", request.priority)
    if target is None:
        reading.error(f"{at}.priority", "must be routine, urgent, asap or stat", "code_invalid")
    return target


def _concerns(reading: _Reading, request: Any, at: str) -> dict[str, Any]:
    reading.origin["concerns"] = f"{at}.reasonCode"
    reading.origin["concerns.factors"] = f"{at}.reasonCode"
    reading.origin["concerns.description"] = f"{at}.note"
    factors = [
        _coding_in(reading, "reason", reason, f"{at}.reasonCode[{index}]", "a CIN factor")
        for index, reason in enumerate(request.reasonCode or [])
    ]
    notes = [note.text for note in request.note or [] if note.text]
    return {"factors": factors, "description": "\n\n".join(notes) or None}


def _partner_reference(request: Any) -> str | None:
    for identifier in request.identifier or []:
        if identifier.value:
            return identifier.value
    return None


def _referrer(reading: _Reading, request: Any, at: str) -> tuple[dict[str, Any], _Located] | None:
    """The referrer from the requester: a Practitioner, or a PractitionerRole naming one."""
    if request.requester is None:
        reading.origin["referrer"] = f"{at}.requester"
        return None
    requester = reading.resolve(
        request.requester, f"{at}.requester", "Practitioner", "PractitionerRole"
    )
    if requester is None:
        return None
    role: _Located | None = None
    practitioner: _Located | None = requester
    if requester.resource.get_resource_type() == "PractitionerRole":
        role = requester
        practitioner = reading.resolve(
            role.resource.practitioner, f"{role.path}.practitioner", "Practitioner"
        )
        if practitioner is None:
            return None
    assert practitioner is not None
    reading.origin["referrer"] = practitioner.path
    given, family = _name(reading, practitioner, "referrer")
    reading.origin["referrer.person_name"] = f"{practitioner.path}.name[0]"
    telecoms = [(practitioner.path, practitioner.resource.telecom or [])]
    if role is not None:
        telecoms.insert(0, (role.path, role.resource.telecom or []))
    contact: dict[str, Any] = {}
    for path, points in telecoms:
        for index, point in enumerate(points):
            kind = {"email": "email", "phone": "phone"}.get(point.system or "")
            if kind and kind not in contact and point.value:
                contact[kind] = point.value
                reading.origin[f"referrer.{kind}"] = f"{path}.telecom[{index}].value"
    role_name = None
    if role is not None and role.resource.code:
        first = role.resource.code[0]
        role_name = first.text or next((c.display for c in first.coding or [] if c.display), None)
        reading.origin["referrer.role"] = f"{role.path}.code[0]"
    referrer = {
        "person_name": " ".join(part for part in (given, family) if part) or None,
        "role": role_name,
        **contact,
    }
    return referrer, role or practitioner


def _referral_source(
    reading: _Reading,
    requester: tuple[dict[str, Any], _Located] | None,
    at: str,
    organisation_type: str | None,
) -> str | None:
    reading.origin["referral_source"] = f"{at}.requester"
    role = requester[1] if requester else None
    if role is not None and role.resource.get_resource_type() == "PractitionerRole":
        for index, code in enumerate(role.resource.code or []):
            for coding in code.coding or []:
                source = translate("referral_source", coding.system, coding.code)
                if source is not None:
                    reading.origin["referral_source"] = f"{role.path}.code[{index}]"
                    return source
    if organisation_type == PartnerOrganisationType.HEALTH:
        return ReferralSource.OTHER_HEALTH.value
    reading.error(
        f"{role.path}.code" if role else f"{at}.requester",
        "must code the CIN referral source (a PractitionerRole.code in the hub's "
        "cin-referral-source system)",
        "required",
    )
    return None


def _consent(reading: _Reading, consent: _Located) -> dict[str, Any]:
    reading.origin["consent"] = consent.path
    reading.origin["consent.given_at"] = f"{consent.path}.dateTime"
    reading.origin["consent.covers"] = f"{consent.path}.provision.code"
    reading.origin["consent.given_by"] = f"{consent.path}.performer"
    if consent.resource.status != "active":
        reading.error(
            f"{consent.path}.status",
            "must be active: consent refused or withdrawn is no consent "
            "(refer under a safeguarding override instead)",
            "code_invalid",
        )
    provision_type = consent.resource.provision.type if consent.resource.provision else None
    if provision_type not in (None, "permit"):
        reading.error(f"{consent.path}.provision.type", "must be permit", "code_invalid")
    given_by = None
    performers = consent.resource.performer or []
    if performers:
        who = reading.resolve(
            performers[0], f"{consent.path}.performer[0]", "RelatedPerson", "Patient"
        )
        if who is not None and who.resource.name:
            name = who.resource.name[0]
            given_by = " ".join([*(name.given or []), name.family or ""]).strip() or None
    covers: list[str | None] = []
    provision = consent.resource.provision
    for index, code in enumerate((provision.code if provision else None) or []):
        path = f"{consent.path}.provision.code[{index}]"
        codes = [c.code for c in code.coding or [] if c.system == CONSENT_SCOPE_SYSTEM]
        if not codes:
            reading.error(path, f"must be coded in {CONSENT_SCOPE_SYSTEM}", "code_unknown")
        covers.extend(codes)
    return {"given_by": given_by, "given_at": _iso(consent.resource.dateTime), "covers": covers}


def _override(
    reading: _Reading,
    request: Any,
    at: str,
    requester: tuple[dict[str, Any], _Located] | None,
) -> dict[str, Any] | None:
    found = _extension(request, SAFEGUARDING_OVERRIDE)
    if found is None:
        return None
    index, extension = found
    reading.origin["safeguarding_override"] = f"{at}.extension[{index}]"
    reading.origin["safeguarding_override.reason"] = f"{at}.extension[{index}].valueString"
    reading.origin["safeguarding_override.recorded_by"] = f"{at}.requester"
    reading.origin["safeguarding_override.recorded_at"] = f"{at}.authoredOn"
    return {
        "reason": extension.valueString,
        "recorded_by": requester[0]["person_name"] if requester else None,
        "recorded_at": _iso(request.authoredOn),
    }


# --- answering --------------------------------------------------------------------

_STATUS = {ReferralStatus.RECEIVED: "active", ReferralStatus.HELD: "on-hold"}


def accepted_service_request(accepted: ReferralAccepted, body: Mapping[str, Any]) -> dict:
    """The referral as received: the hub's id and status and nothing the referrer did not send.

    Nothing about the family the hub matched it to (issue 14), as the JSON answer.
    """
    request = _request_in(body)
    subject = (request or {}).get("subject") or {}
    reference = subject.get("reference") if isinstance(subject, dict) else None
    answer = ServiceRequest.model_validate(
        {
            "resourceType": "ServiceRequest",
            "id": str(accepted.referral_id),
            "meta": {"lastUpdated": accepted.received_at.isoformat()},
            "status": _STATUS.get(accepted.status, "active"),
            "intent": (request or {}).get("intent", "order"),
            "priority": (request or {}).get("priority"),
            "subject": (
                {"reference": reference}
                if reference and not reference.startswith("#")
                else {"type": "Patient", "display": "The child referred"}
            ),
            "authoredOn": (request or {}).get("authoredOn"),
        }
    )
    return answer.model_dump(mode="json", exclude_none=True)


def accepted_message(accepted: ReferralAccepted, body: Mapping[str, Any]) -> dict:
    """The response message: a MessageHeader answering the request's, and the ServiceRequest."""
    entries = body.get("entry") or []
    header = entries[0]["resource"]
    request = accepted_service_request(accepted, body)
    reference = f"ServiceRequest/{accepted.referral_id}"
    answer = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "message",
            "timestamp": accepted.received_at.isoformat(),
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{_response_id(accepted.referral_id)}",
                    "resource": {
                        "resourceType": "MessageHeader",
                        "id": str(_response_id(accepted.referral_id)),
                        "eventCoding": {"system": MESSAGE_EVENT_SYSTEM, "code": REFERRAL_EVENT},
                        "source": {"endpoint": f"{HUB_FHIR}/intake"},
                        "response": {"identifier": header.get("id") or "unknown", "code": "ok"},
                        "focus": [{"reference": reference}],
                    },
                },
                {"fullUrl": reference, "resource": request},
            ],
        }
    )
    return answer.model_dump(mode="json", exclude_none=True)


def _response_id(referral_id: UUID) -> UUID:
    # Stable per referral, so that a replayed request answers the same message.
    return UUID(int=referral_id.int ^ 0x5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A)


def _request_in(body: Mapping[str, Any]) -> dict[str, Any] | None:
    if body.get("resourceType") == "ServiceRequest":
        return dict(body)
    for entry in body.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "ServiceRequest":
            return resource
    return None


_ISSUE_CODES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "invalid",
    428: "required",
    429: "throttled",
}
_ISSUE_CODE_BY_ERROR = {
    "missing": "required",
    "required": "required",
    "code_unknown": "code-invalid",
    "code_invalid": "code-invalid",
    "resource_type": "structure",
    "cardinality": "structure",
    "reference_unresolved": "not-found",
}


def operation_outcome(
    status: int, detail: str | None, errors: Iterable[Mapping[str, str]]
) -> dict[str, Any]:
    """A refusal as an OperationOutcome: an issue per element at fault, with its FHIRPath."""
    issues: list[dict[str, Any]] = []
    for error in errors:
        issue = {
            "severity": "error",
            "code": _ISSUE_CODE_BY_ERROR.get(error["code"], _ISSUE_CODES.get(status, "invalid")),
            "details": {"text": error["message"]},
            "diagnostics": error["code"],
        }
        if error["field"][:1].isupper():  # a FHIRPath (a header or a query is not one)
            issue["expression"] = [error["field"]]
        else:
            issue["details"] = {"text": f"{error['field']}: {error['message']}"}
        issues.append(issue)
    if not issues:
        issues.append(
            {
                "severity": "fatal" if status >= 500 else "error",
                "code": _ISSUE_CODES.get(status, "exception" if status >= 500 else "processing"),
                "details": {"text": detail or "The request was refused."},
            }
        )
    outcome = OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": issues})
    return outcome.model_dump(mode="json", exclude_none=True)


def capability_statement(published: datetime) -> dict[str, Any]:
    """What the FHIR front door supports: the two ways to refer, and reading a referral's
    Task and ServiceRequest back; nothing more."""
    statement = CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "url": f"{HUB_FHIR}/CapabilityStatement/intake",
            "name": "EarlyHelpHubIntake",
            "title": "Early Help Hub: FHIR R4 referrals",
            "status": "active",
            "date": published.isoformat(),
            "kind": "instance",
            "implementation": {"description": "The Early Help Hub's front door (intake)"},
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_MEDIA_TYPE],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        "Referrals from health partners. Authenticate with the partner's OAuth2 "
                        "bearer token, as for the JSON API; answers are application/fhir+json."
                    ),
                    "security": {
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "OAuth",
                                    }
                                ]
                            }
                        ]
                    },
                    "resource": [
                        {
                            "type": "ServiceRequest",
                            "interaction": [{"code": "create"}, {"code": "read"}],
                            "documentation": (
                                "Create: a referral with its children (Patient), household "
                                "(RelatedPerson), referrer and consent contained. Read: a "
                                "referral you made, without its people."
                            ),
                        },
                        {
                            "type": "Task",
                            "interaction": [{"code": "read"}, {"code": "search-type"}],
                            "searchParam": [
                                {
                                    "name": "based-on",
                                    "definition": "http://hl7.org/fhir/SearchParameter/Task-based-on",
                                    "type": "reference",
                                    "documentation": "ServiceRequest/{id} of a referral you made.",
                                }
                            ],
                            "documentation": (
                                "A referral's progress: received, on-hold, accepted or "
                                "rejected at triage, in-progress once allocated, completed "
                                "when the case closes, cancelled when withdrawn."
                            ),
                        },
                    ],
                    "operation": [
                        {
                            "name": "process-message",
                            "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
                            "documentation": f"A referral message: event {REFERRAL_EVENT}.",
                        }
                    ],
                }
            ],
        }
    )
    return statement.model_dump(mode="json", exclude_none=True)


def example(name: str) -> dict[str, Any]:
    """An example request of docs/fhir.md, as the OpenAPI document shows and a test posts it."""
    return json.loads((Path(__file__).with_name("fhir_examples") / name).read_text())


Parser = Callable[[Any, str | None], ReferralSubmission]
