"""The FHIR R4 front door against a real database (SQLite and PostgreSQL) and the real broker.

The example requests of docs/fhir.md are posted as they are, so that they keep working.
"""

import copy
import json
import re
import time
from uuid import UUID

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from sqlalchemy import create_engine, func, select

from hub.contracts.allocation import CaseAllocated
from hub.contracts.caseplan import CaseClosed
from hub.contracts.codes import ClosureReason
from hub.contracts.intake import ReferralReceived
from hub.tables import event_store
from hub.testing import bearer
from intake.fhir_mapping import example, read_message
from intake.schemas import TriageDecision
from intake.service import definition

HEALTH, SCHOOL, STAFF = "brent-health-visiting", "harlesden-primary-school", "front-door-demo"
FHIR = "application/fhir+json"
MESSAGE = example("health-visitor-message.json")
SERVICE_REQUEST = example("gp-service-request.json")
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]


@pytest.fixture
def intake(service_client):
    client = service_client(definition)
    client.headers.update(bearer(client.settings, HEALTH))
    return client


@pytest.fixture
def received(database_url):
    """The ReferralReceived events stored, oldest first."""
    engine = create_engine(database_url)

    def events():
        with engine.connect() as conn:
            rows = conn.execute(
                select(event_store.c.data)
                .where(event_store.c.event_type == ReferralReceived.event_type)
                .order_by(event_store.c.position)
            )
            return [json.loads(row.data) for row in rows]

    def count():
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(event_store)).scalar_one()

    events.count = count
    yield events
    engine.dispose()


def post(client, path, body, **headers):
    return client.post(path, content=json.dumps(body), headers={"Content-Type": FHIR, **headers})


def _without_ids(event):
    """A ReferralReceived as the referrer described it: no hub ids or times."""
    data = copy.deepcopy(event)
    # The second of two identical referrals matches the first one's family: not a difference.
    for key in ("referral_id", "family_id", "received_at", "matched_existing_family"):
        data.pop(key, None)
    for person in data.get("children", []) + data.get("household_members", []):
        person.pop("person_id", None)
    return data


def test_a_health_visitor_refers_a_mother_and_two_children_under_five(intake, received):
    response = post(intake, "/fhir/$process-message", MESSAGE)

    assert response.status_code == 202, response.text
    assert response.headers["content-type"] == FHIR
    answer = Bundle.model_validate(response.json())
    header, request = (entry.resource for entry in answer.entry)
    assert header.get_resource_type() == "MessageHeader"
    assert header.response.code == "ok"
    assert header.response.identifier == MESSAGE["entry"][0]["resource"]["id"]
    assert request.get_resource_type() == "ServiceRequest"
    assert request.status == "active" and request.priority == "urgent"
    assert header.focus[0].reference == f"ServiceRequest/{request.id}"
    assert response.headers["location"] == f"/v1/referrals/{request.id}"
    # Nothing about the family the hub matched the referral to (issue 14).
    assert "family" not in response.text and "9434765870" not in response.text

    [event] = received()
    assert event["referral_source"] == "3B"
    assert event["urgency"] == "urgent"
    assert [c["given_name"] for c in event["children"]] == ["Tobi", "Ada"]
    assert [c["nhs_number"] for c in event["children"]] == ["9434765870", "9434765862"]
    assert event["household_members"][0]["relationship"] == "mother"
    assert event["concerns"]["factors"] == ["4B", "3B"]
    assert event["consent"]["given_by"] == "Funmi Adeyemi"
    assert event["referrer"]["organisation_id"] == HEALTH
    assert event["referrer"]["person_name"] == "Jane Okoro"

    partner = intake.get(f"/v1/referrals/{request.id}")
    assert partner.status_code == 200 and "family_id" not in partner.json()
    staff = intake.get(f"/v1/referrals/{request.id}", headers=bearer(intake.settings, STAFF))
    assert staff.json()["status"] == "received" and staff.json()["family_id"]


def test_the_front_door_sees_a_fhir_referral_exactly_as_the_same_json_one(intake, received):
    fhir = post(intake, "/fhir/$process-message", MESSAGE)
    submission = read_message(MESSAGE, "health").model_dump(mode="json", exclude_none=True)
    submission["referrer"] = {
        k: v for k, v in submission["referrer"].items() if not k.startswith("organisation")
    }
    plain = intake.post("/v1/referrals", json=submission)
    assert fhir.status_code == plain.status_code == 202, (fhir.text, plain.text)

    first, second = received()
    assert _without_ids(first) == _without_ids(second)
    staff = bearer(intake.settings, STAFF)
    views = [
        intake.get(f"/v1/referrals/{referral_id}", headers=staff).json()
        for referral_id in (fhir.json()["entry"][1]["resource"]["id"], plain.json()["referral_id"])
    ]
    ignored = {"referral_id", "received_at", "family_id", "matching"}
    assert [{k: v for k, v in view.items() if k not in ignored} for view in views] == [
        {k: v for k, v in views[1].items() if k not in ignored}
    ] * 2
    queue = intake.get("/v1/referrals", headers=staff).json()["items"]
    assert {item["referral_id"] for item in queue} == {view["referral_id"] for view in views}


def test_a_gp_refers_with_a_safeguarding_override(intake, received):
    response = post(intake, "/fhir/ServiceRequest", SERVICE_REQUEST)

    assert response.status_code == 202, response.text
    request = ServiceRequest.model_validate(response.json())
    assert request.status == "active" and request.priority == "asap"
    assert "contained" not in response.json() and "Novak" not in response.text
    [event] = received()
    assert event["urgency"] == "immediate"
    assert event["referral_source"] == "3A"
    assert event["consent"] is None
    assert event["safeguarding_override"]["recorded_by"] == "Anita Shah"
    assert event["safeguarding_override"]["recorded_at"].startswith("2026-12-01T14:30")
    assert event["household_members"][0]["relationship"] == "father"


def test_a_repeated_request_with_its_idempotency_key_answers_the_first_response(intake, received):
    first = post(intake, "/fhir/$process-message", MESSAGE, **{"Idempotency-Key": "hv-0412"})
    again = post(intake, "/fhir/$process-message", MESSAGE, **{"Idempotency-Key": "hv-0412"})

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["content-type"] == FHIR
    assert len(received()) == 1


def test_an_idempotency_key_reused_for_another_referral_is_an_operation_outcome(intake, received):
    other = copy.deepcopy(MESSAGE)
    other["entry"][1]["resource"]["priority"] = "routine"

    first = post(intake, "/fhir/$process-message", MESSAGE, **{"Idempotency-Key": "hv-0413"})
    reused = post(intake, "/fhir/$process-message", other, **{"Idempotency-Key": "hv-0413"})

    assert first.status_code == 202
    assert reused.status_code == 422, reused.text
    assert reused.headers["content-type"] == FHIR
    [issue] = OperationOutcome.model_validate(reused.json()).issue
    assert issue.code == "invalid" and "Idempotency-Key" in issue.details.text
    assert len(received()) == 1


def _entry(bundle, index):
    return bundle["entry"][index]["resource"]


def _wrong_resource_type(bundle):
    bundle["entry"].append({"resource": {"resourceType": "Observation", "status": "final"}})
    return "Bundle.entry[9].resource"


def _no_nhs_number_system(bundle):
    del _entry(bundle, 2)["identifier"][0]["system"]
    return "Bundle.entry[2].resource.identifier[0].system"


def _invalid_check_digit(bundle):
    _entry(bundle, 3)["identifier"][0]["value"] = "9434765863"
    return "Bundle.entry[3].resource.identifier[0].value"


def _unknown_reason_code(bundle):
    _entry(bundle, 1)["reasonCode"][1]["coding"][0]["code"] = "99Z"
    return "Bundle.entry[1].resource.reasonCode[1].coding"


def _born_in_the_future(bundle):
    _entry(bundle, 3)["birthDate"] = "2999-01-01"
    return "Bundle.entry[3].resource.birthDate"


def _not_a_message(bundle):
    bundle["type"] = "collection"
    return "Bundle.type"


def _header_not_first(bundle):
    bundle["entry"].reverse()
    return "Bundle.entry[0].resource"


def _invalid_fhir(bundle):
    _entry(bundle, 2)["name"][0]["given"] = "Tobi"
    return "Bundle.entry[2].resource.name[0].given"


def _missing_priority(bundle):
    del _entry(bundle, 1)["priority"]
    return "Bundle.entry[1].resource.priority"


def _consent_refused(bundle):
    _entry(bundle, 8)["status"] = "rejected"
    return "Bundle.entry[8].resource.status"


@pytest.mark.parametrize(
    "spoil",
    [
        _consent_refused,
        _wrong_resource_type,
        _no_nhs_number_system,
        _invalid_check_digit,
        _unknown_reason_code,
        _born_in_the_future,
        _not_a_message,
        _header_not_first,
        _invalid_fhir,
        _missing_priority,
    ],
)
def test_a_bad_bundle_is_an_operation_outcome_naming_the_element(intake, received, spoil):
    bundle = copy.deepcopy(MESSAGE)
    expression = spoil(bundle)

    response = post(intake, "/fhir/$process-message", bundle)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == FHIR
    outcome = OperationOutcome.model_validate(response.json())
    assert [issue.expression for issue in outcome.issue] == [[expression]]
    assert all(issue.severity == "error" for issue in outcome.issue)
    assert "9434765" not in response.text  # no identifier echoed
    assert received.count() == 0


def test_a_bad_service_request_names_its_contained_element(intake, received):
    request = copy.deepcopy(SERVICE_REQUEST)
    request["contained"][0]["identifier"][0]["value"] = "9434765918"
    request["subject"] = {"reference": "#nobody"}

    response = post(intake, "/fhir/ServiceRequest", request)

    assert response.status_code == 422
    issues = OperationOutcome.model_validate(response.json()).issue
    assert [issue.expression for issue in issues] == [["ServiceRequest.subject"]]
    del request["subject"]
    request["subject"] = {"reference": "#child"}
    response = post(intake, "/fhir/ServiceRequest", request)
    issues = OperationOutcome.model_validate(response.json()).issue
    assert [issue.expression for issue in issues] == [
        ["ServiceRequest.contained[0].identifier[0].value"]
    ]
    assert received.count() == 0


def test_refusals_of_the_caller_are_operation_outcomes_with_the_json_status(intake):
    anonymous = intake.post(
        "/fhir/$process-message",
        content=json.dumps(MESSAGE),
        headers={"Content-Type": FHIR, "Authorization": ""},
    )
    staff = post(intake, "/fhir/ServiceRequest", SERVICE_REQUEST, **bearer(intake.settings, STAFF))
    not_json = intake.post("/fhir/ServiceRequest", content=b"{", headers={"Content-Type": FHIR})
    as_text = intake.post(
        "/fhir/ServiceRequest", content=b"{}", headers={"Content-Type": "text/plain"}
    )

    for response, status, code in [
        (anonymous, 401, "login"),
        (staff, 403, "forbidden"),
        (not_json, 400, "structure"),
        (as_text, 415, "not-supported"),
    ]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == FHIR
        [issue] = OperationOutcome.model_validate(response.json()).issue
        assert issue.code == code


def test_a_partner_that_is_not_health_codes_the_referral_source(service_client):
    client = service_client(definition)
    request = copy.deepcopy(SERVICE_REQUEST)
    del request["contained"][2]["code"]

    school = post(client, "/fhir/ServiceRequest", request, **bearer(client.settings, SCHOOL))
    health = post(client, "/fhir/ServiceRequest", request, **bearer(client.settings, HEALTH))

    assert school.status_code == 422
    [issue] = OperationOutcome.model_validate(school.json()).issue
    assert issue.expression == ["ServiceRequest.contained[2].code"]
    assert health.status_code == 202, health.text


def test_the_capability_statement_lists_exactly_what_is_supported(intake):
    response = intake.get("/fhir/metadata")

    assert response.status_code == 200
    assert response.headers["content-type"] == FHIR
    statement = CapabilityStatement.model_validate(response.json())
    assert statement.fhirVersion == "4.0.1"
    [rest] = statement.rest
    supported = [(r.type, [i.code for i in r.interaction]) for r in rest.resource]
    assert supported == [("ServiceRequest", ["create", "read"]), ("Task", ["read", "search-type"])]
    assert [p.name for r in rest.resource for p in r.searchParam or []] == ["based-on"]
    assert [operation.name for operation in rest.operation] == ["process-message"]
    assert "Subscription" not in response.text
    # Exactly what the app routes: each interaction listed has its route, and no other.
    path_of = {"create": ("POST", ""), "read": ("GET", "/{id}"), "search-type": ("GET", "")}
    listed = {
        (path_of[code][0], f"/fhir/{kind}{path_of[code][1]}")
        for kind, codes in supported
        for code in codes
    } | {("POST", "/fhir/$process-message"), ("GET", "/fhir/metadata")}
    routed = {
        (method.upper(), re.sub(r"\{[a-z_]+\}", "{id}", path))
        for path, operations in intake.app.openapi()["paths"].items()
        if path.startswith("/fhir/")
        for method in operations
    }
    assert routed == listed


def _until(read, ready, what, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while True:
        answer = read()
        if ready(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened: {answer}")
        time.sleep(0.05)


def test_a_health_visitor_follows_its_referral_as_a_task_from_received_to_closed(intake, publish):
    referred = post(intake, "/fhir/$process-message", MESSAGE)
    assert referred.status_code == 202, referred.text
    referral_id = referred.json()["entry"][1]["resource"]["id"]
    staff = bearer(intake.settings, STAFF)

    task = intake.get(f"/fhir/Task/{referral_id}")
    assert task.status_code == 200, task.text
    assert task.headers["content-type"] == FHIR
    received = Task.model_validate(task.json())
    assert (received.status, received.businessStatus.coding[0].code) == ("received", "received")
    assert received.basedOn[0].reference == f"ServiceRequest/{referral_id}"
    found = intake.get("/fhir/Task", params={"based-on": f"ServiceRequest/{referral_id}"})
    assert found.status_code == 200, found.text
    assert Bundle.model_validate(found.json()).total == 1
    assert found.json()["entry"][0]["resource"] == task.json()

    # Another partner learns nothing: not found, and nothing found.
    school = bearer(intake.settings, SCHOOL)
    assert intake.get(f"/fhir/Task/{referral_id}", headers=school).status_code == 404
    nothing = intake.get("/fhir/Task", params={"based-on": referral_id}, headers=school)
    assert nothing.status_code == 200 and nothing.json()["total"] == 0, nothing.text
    unsupported = intake.get("/fhir/Task", params={"based-on": referral_id, "status": "x"})
    assert unsupported.status_code == 400, unsupported.text
    issue = OperationOutcome.model_validate(unsupported.json()).issue[0]
    assert "query.status" in issue.details.text

    triaged = intake.post(f"/v1/referrals/{referral_id}/triage", json=DECISION, headers=staff)
    assert triaged.status_code == 200, triaged.text
    family_id = UUID(intake.get(f"/v1/referrals/{referral_id}", headers=staff).json()["family_id"])
    case_id = UUID(triaged.json()["triage"]["case_id"])
    accepted = Task.model_validate(intake.get(f"/fhir/Task/{referral_id}").json())
    assert accepted.status == "accepted"
    outputs = {o.type.text: o for o in accepted.output}
    assert outputs["route"].valueCodeableConcept.coding[0].code == "early_help"
    assert outputs["case id"].valueString == str(case_id)

    allocated = CaseAllocated.example().model_copy(
        update={"case_id": case_id, "family_id": family_id}
    )
    publish(allocated)
    in_progress = _until(
        lambda: intake.get(f"/fhir/Task/{referral_id}").json(),
        lambda t: t["status"] == "in-progress",
        "the allocation reaching the Task",
    )
    task_model = Task.model_validate(in_progress)
    assert task_model.owner.display == allocated.lead_professional.name
    role = next(r for r in task_model.contained if r.get_resource_type() == "PractitionerRole")
    assert {t.value for t in role.telecom} == {
        allocated.lead_professional.email,
        allocated.lead_professional.phone,
    }

    closed = CaseClosed.example().model_copy(
        update={"case_id": case_id, "family_id": family_id, "reason": ClosureReason.NEEDS_MET}
    )
    publish(closed)
    completed = _until(
        lambda: intake.get(f"/fhir/Task/{referral_id}").json(),
        lambda t: t["status"] == "completed",
        "the closure reaching the Task",
    )
    assert Task.model_validate(completed).statusReason.coding[0].code == "needs_met"
    view = intake.get(f"/v1/referrals/{referral_id}").json()
    assert view["status"] == "closed"
    assert view["closure"] == {
        "closed_at": closed.closed_at.isoformat().replace("+00:00", "Z"),
        "reason": "needs_met",
    }

    request = intake.get(f"/fhir/ServiceRequest/{referral_id}")
    assert request.status_code == 200, request.text
    read_back = ServiceRequest.model_validate(request.json())
    assert (read_back.status, read_back.priority) == ("completed", "urgent")
    # The people are not sent back: none of the message's names appears.
    sent_names = {
        name["family"]
        for entry in MESSAGE["entry"]
        for name in entry["resource"].get("name", [])
        if "family" in name
    }
    assert sent_names and not any(name in request.text for name in sent_names)
    assert intake.get(f"/fhir/ServiceRequest/{referral_id}", headers=school).status_code == 404
