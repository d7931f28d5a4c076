# ruff: noqa: E501 (the matrix is a table, one operation a line)
"""Who may do what, over real records: every operation x every identity x in and out of scope.

The operations come from each service's OpenAPI document; the identities from
config/identities.yaml. An operation or identity missing from MATRIX fails the
test, so no route ships without its row. Each cell says what the identity gets:

    -  refused: 403 on every record
    a  allowed on every record: no 401 or 403 (a list shows both records)
    s  scoped: the record in scope passes the access check (no 401, 403 or 404);
       the one outside it answers 404, as a missing record (a list leaves it out,
       a search for it finds nothing)
    v  scoped by the body: as `s`, but the record outside scope is a 422 naming it
    r  sees but may not work: 403 on the record in scope, 404 on the one outside it

Request bodies are the examples of the OpenAPI documents, where they give one.
"Passes the access check" allows any other answer (a 409 for a rule, a 422 for a
value the domain refuses): what is checked is who reaches the record.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from hub.auth import Identities
from hub.contracts.allocation import CaseAllocated
from hub.contracts.intake import ReferralReceived, ReferralTriaged
from hub.testing import bearer
from intake.fhir_mapping import example

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = {
    "school": "harlesden-primary-school",
    "health": "brent-health-visiting",
    "police": "met-police-brent",
    "social": "brent-childrens-social-care",
    "front": "front-door-demo",
    "samira": "samira-okafor",
    "manager": "harlesden-team-manager",
    "chair": "brent-panel-chair",
    "head": "early-help-service-manager",
    "operator": "hub-operator",
    "ig": "information-governance-officer",
}

MATRIX = """
                                                                               school  health  police  social  front   samira  manager  chair   head    operator  ig
intake
POST   /v1/referrals                                                           a       a       a       a       -       -       -       -       -       -       -
GET    /v1/referrals                                                           s       s       s       s       a       -       -       -       -       -       -
GET    /v1/referrals/{referral_id}                                             s       s       s       s       a       -       -       -       -       -       -
POST   /v1/referrals/{referral_id}/triage                                      -       -       -       -       a       -       -       -       -       -       -
POST   /v1/referrals/{referral_id}/withdrawal                                  s       s       s       s       -       -       -       -       -       -       -
POST   /v1/referrals/{referral_id}/matches/{match_id}/confirmation             -       -       -       -       a       -       -       -       -       -       -
POST   /v1/referrals/{referral_id}/matches/{match_id}/rejection                -       -       -       -       a       -       -       -       -       -       -
POST   /v1/referrals/{referral_id}/unlinking                                   -       -       -       -       a       -       -       -       -       -       -
POST   /v1/consultations                                                       a       a       a       a       -       -       -       -       -       -       -
GET    /v1/consultations                                                       -       -       -       -       a       -       -       -       -       -       -
GET    /v1/consultations/{consultation_id}                                     s       s       s       s       a       -       -       -       -       -       -
POST   /v1/consultations/{consultation_id}/advice                              -       -       -       -       a       -       -       -       -       -       -
POST   /v1/consultations/{consultation_id}/referral                            s       s       s       s       -       -       -       -       -       -       -
POST   /v1/police-notifications                                                -       -       a       -       -       -       -       -       -       -       -
POST   /v1/encompass-notices/{notice_id}/acknowledgement                       s       -       -       -       a       -       -       -       -       -       -
GET    /v1/encompass-notices/{notice_id}/acknowledgement-link                  a       a       a       a       a       a       a       a       a       a       a
POST   /v1/encompass-notices/{notice_id}/acknowledgement-link                  a       a       a       a       a       a       a       a       a       a       a
GET    /v1/encompass-notices                                                   -       -       -       -       a       -       -       -       -       -       -
POST   /fhir/$process-message                                                  a       a       a       a       -       -       -       -       -       -       -
POST   /fhir/ServiceRequest                                                    a       a       a       a       -       -       -       -       -       -       -
GET    /fhir/metadata                                                          a       a       a       a       a       a       a       a       a       a       a
GET    /fhir/Task                                                              s       s       s       s       a       -       -       -       -       -       -
GET    /fhir/Task/{task_id}                                                    s       s       s       s       a       -       -       -       -       -       -
GET    /fhir/ServiceRequest/{service_request_id}                               s       s       s       s       a       -       -       -       -       -       -
GET    /v1/subject-access/families/{family_id}                                 -       -       -       -       -       -       -       -       -       -       a
POST   /v1/subject-access/people-by-nhs-number                                 -       -       -       -       -       -       -       -       -       -       a
GET    /v1/subject-access/people/{person_id}                                   -       -       -       -       -       -       -       -       -       -       a
GET    /v1/dead-letters                                                        -       -       -       -       -       -       -       -       -       a       -
GET    /v1/dead-letters/{dead_letter_id}                                       -       -       -       -       -       -       -       -       -       a       -
POST   /v1/dead-letter-redrives                                                -       -       -       -       -       -       -       -       -       a       -
allocation
GET    /v1/allocations                                                         -       -       -       -       -       s       s       s       a       -       -
GET    /v1/allocations/timeliness                                              -       -       -       -       -       s       s       s       a       -       -
GET    /v1/cases/{case_id}/allocation                                          -       -       -       -       -       s       s       s       a       -       -
POST   /v1/cases/{case_id}/allocation                                          -       -       -       -       -       -       s       -       a       -       -
POST   /v1/cases/{case_id}/reallocation                                        -       -       -       -       -       -       s       -       a       -       -
GET    /v1/workers/{worker_id}/caseload                                        -       -       -       -       -       s       s       s       a       -       -
POST   /v1/workers/{worker_id}/caseload/reallocation                           -       -       -       -       -       -       s       -       a       -       -
GET    /v1/caseloads                                                           -       -       -       -       -       s       s       s       a       -       -
GET    /v1/registry                                                            -       -       -       -       -       a       a       a       a       -       -
PUT    /v1/registry/localities/{entry_id}                                      -       -       -       -       -       -       s       -       a       -       -
PUT    /v1/registry/teams/{entry_id}                                           -       -       -       -       -       -       s       -       a       -       -
PUT    /v1/registry/workers/{entry_id}                                         -       -       -       -       -       -       s       -       a       -       -
PUT    /v1/registry/providers/{entry_id}                                       -       -       -       -       -       -       a       -       a       -       -
GET    /v1/providers/capacity                                                  -       -       -       -       -       a       a       a       a       -       -
GET    /v1/panels                                                              -       -       -       -       -       s       s       s       a       -       -
POST   /v1/panels                                                              -       -       -       -       -       -       -       v       a       -       -
GET    /v1/panels/{panel_id}                                                   -       -       -       -       -       s       s       s       a       -       -
POST   /v1/panels/{panel_id}/decisions                                         -       -       -       -       -       -       -       s       a       -       -
GET    /v1/subject-access/families/{family_id}                                 -       -       -       -       -       -       -       -       -       -       a
GET    /v1/dead-letters                                                        -       -       -       -       -       -       -       -       -       a       -
GET    /v1/dead-letters/{dead_letter_id}                                       -       -       -       -       -       -       -       -       -       a       -
POST   /v1/dead-letter-redrives                                                -       -       -       -       -       -       -       -       -       a       -
caseplan
GET    /v1/families/{family_id}/chronology                                     -       -       -       -       a       s       s       s       a       -       -
GET    /v1/cases                                                               -       -       -       -       -       s       s       s       a       -       -
GET    /v1/cases/{case_id}                                                     -       -       -       -       -       s       s       s       a       -       -
GET    /v1/cases/{case_id}/assessments/draft                                   -       -       -       -       -       s       s       r       a       -       -
POST   /v1/cases/{case_id}/assessments                                         -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/actions                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/outcomes                                            -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/reviews                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/step-up                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/closure                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/team                                                -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/team/{member_id}/removal                            -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/consent                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/consent/narrowing                                   -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/consent/withdrawal                                  -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/safeguarding-override                               -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/safeguarding-override/ending                        -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/schools                                             -       -       -       -       -       s       s       -       a       -       -
POST   /v1/cases/{case_id}/service-starts                                      -       -       -       -       -       s       s       -       a       -       -
POST   /v1/step-downs                                                          -       -       -       a       -       -       -       -       -       -       -
GET    /v1/reports/performance                                                 -       -       -       -       -       -       a       -       a       -       -
GET    /v1/reports/performance/outside-four-weeks                              -       -       -       -       -       -       a       -       a       -       -
GET    /v1/returns/annex-a/early-help                                          -       -       -       -       -       -       a       -       a       -       a
GET    /v1/returns/supporting-families                                         -       -       -       -       -       -       a       -       a       -       a
GET    /v1/subject-access/families/{family_id}                                 -       -       -       -       -       -       -       -       -       -       a
GET    /v1/retention/due                                                       -       -       -       -       -       -       -       -       -       -       a
PUT    /v1/families/{family_id}/legal-hold                                     -       -       -       -       -       -       -       -       -       -       a
DELETE /v1/families/{family_id}/legal-hold                                     -       -       -       -       -       -       -       -       -       -       a
GET    /v1/dead-letters                                                        -       -       -       -       -       -       -       -       -       a       -
GET    /v1/dead-letters/{dead_letter_id}                                       -       -       -       -       -       -       -       -       -       a       -
POST   /v1/dead-letter-redrives                                                -       -       -       -       -       -       -       -       -       a       -
notifications
POST   /v1/subscriptions                                                       a       a       a       a       -       -       -       -       -       -       -
GET    /v1/subscriptions                                                       s       s       s       s       -       -       -       -       -       -       -
GET    /v1/subscriptions/{subscription_id}                                     s       s       s       s       -       -       -       -       -       -       -
DELETE /v1/subscriptions/{subscription_id}                                     s       s       s       s       -       -       -       -       -       -       -
POST   /v1/subscriptions/{subscription_id}/pause                               s       s       s       s       -       -       -       -       -       -       -
POST   /v1/subscriptions/{subscription_id}/resume                              s       s       s       s       -       -       -       -       -       -       -
POST   /v1/subscriptions/{subscription_id}/secret/rotate                       s       s       s       s       -       -       -       -       -       -       -
GET    /v1/subscriptions/{subscription_id}/deliveries                          s       s       s       s       -       -       -       -       -       -       -
GET    /v1/subscriptions/{subscription_id}/deliveries/{delivery_id}            a       a       a       a       -       -       -       -       -       -       -
POST   /v1/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver  a       a       a       a       -       -       -       -       -       -       -
POST   /v1/subscriptions/{subscription_id}/replay                              s       s       s       s       -       -       -       -       -       -       -
GET    /v1/subject-access/families/{family_id}                                 -       -       -       -       -       -       -       -       -       -       a
GET    /v1/families/{family_id}/disclosures                                    -       -       -       -       -       -       -       -       -       -       a
GET    /v1/dead-letters                                                        -       -       -       -       -       -       -       -       -       a       -
GET    /v1/dead-letters/{dead_letter_id}                                       -       -       -       -       -       -       -       -       -       a       -
POST   /v1/dead-letter-redrives                                                -       -       -       -       -       -       -       -       -       a       -
"""


def _matrix() -> dict[str, dict[tuple[str, str], dict[str, str]]]:
    lines = [line.split() for line in MATRIX.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    table: dict[str, dict[tuple[str, str], dict[str, str]]] = {}
    service = ""
    for row in rows:
        if len(row) == 1:
            service = row[0]
            table[service] = {}
            continue
        method, path, *cells = row
        assert len(cells) == len(header), f"{method} {path}: {len(cells)} cells"
        table[service][(method, path)] = dict(zip(header, cells, strict=True))
    return table


TABLE = _matrix()
# Operations that run after the reads, so that a read sees the records as seeded;
# deletions last of all.
_ORDER = {"GET": 0, "PUT": 1, "POST": 2, "DELETE": 3}


def _operations(app) -> list[tuple[str, str]]:
    document = app.openapi()
    return sorted(
        (
            (method.upper(), path)
            for path, item in document["paths"].items()
            if (path.startswith("/v1/") and not path.startswith("/v1/oauth"))
            or path.startswith("/fhir/")
            for method in item
        ),
        key=lambda op: (_ORDER[op[0]], op[1]),
    )


def test_every_identity_has_a_column():
    identities = Identities.load(ROOT / "config" / "identities.yaml")
    known = {client for client in COLUMNS.values() if identities.client(client) is not None}
    listed = {c.client_id for c in identities._clients.values()}
    assert known == set(COLUMNS.values()) and listed == set(COLUMNS.values())


# --- records in and out of each identity's scope ---------------------------------------


def _wait(check, what, timeout_s=90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened")


class Records:
    """For each identity, a record in its scope and one outside it, by path parameter."""

    def __init__(self, by_identity, bodies, tokens, searches=None):
        self.by_identity = by_identity  # identity -> {param: (in, out)}
        self.bodies = bodies  # (method, path) -> (in body, out body)
        self.tokens = tokens  # (method, path) -> identity -> (in text, out text) for lists
        # (method, path) -> identity -> (in, out): a search's query for one record each
        # side, and the text that shows the record was found (its id)
        self.searches = searches or {}


def _example(client, method, path) -> dict | None:
    """The request body the operation's OpenAPI document gives as its example."""
    document = client.app.openapi()
    content = document["paths"][path][method.lower()].get("requestBody", {}).get("content", {})
    reference = content.get("application/json", {}).get("schema", {}).get("$ref")
    if reference is None:
        return None
    examples = document["components"]["schemas"][reference.split("/")[-1]].get("examples")
    return copy.deepcopy(examples[0]) if examples else None


def _referral(client) -> dict:
    """The documented example, its referrer's organisation left to the token."""
    body = _example(client, "POST", "/v1/referrals")
    body["referrer"].pop("organisation_id", None)
    return body


def _intake_records(client) -> Records:
    referral_of, consultation_of = {}, {}
    for column in ("school", "health", "police", "social"):
        body = _referral(client)
        made = client.post("/v1/referrals", json=body, headers=bearer(client.settings,
                           COLUMNS[column]))  # fmt: skip
        assert made.status_code == 202, made.text
        referral_of[column] = made.json()["referral_id"]
        asked = client.post("/v1/consultations", json=_example(client, "POST", "/v1/consultations"),
                            headers=bearer(client.settings, COLUMNS[column]))  # fmt: skip
        assert asked.status_code == 201, asked.text
        consultation_of[column] = asked.json()["consultation_id"]
    # Police notify an incident: the example's first child is at Harlesden, the second at
    # St Mary's (a school of config/schools.yaml that is not the school column's).
    notified = client.post(
        "/v1/police-notifications",
        json=_example(client, "POST", "/v1/police-notifications"),
        headers=bearer(client.settings, COLUMNS["police"]),
    )
    assert notified.status_code == 202, notified.text
    harlesden, st_marys = (n["notice_id"] for n in notified.json()["notices"])
    by_identity, tokens = {}, {}
    for column in COLUMNS:
        mine = referral_of.get(column, referral_of["school"])
        other = referral_of["health" if column == "school" else "school"]
        by_identity[column] = {
            "referral_id": (mine, other),
            "task_id": (mine, other),
            "service_request_id": (mine, other),
            "consultation_id": (
                consultation_of.get(column, consultation_of["school"]),
                consultation_of["health" if column == "school" else "school"],
            ),
            "notice_id": (harlesden, st_marys),
            "match_id": (str(uuid4()),) * 2,
            # Subject access: information governance only, for any family or person.
            "family_id": (str(uuid4()),) * 2,
            "person_id": (str(uuid4()),) * 2,
        }
        tokens[column] = (mine, other)
    bodies = {
        ("POST", "/v1/referrals"): _referral(client),
        ("POST", "/v1/consultations/{consultation_id}/referral"): _referral(client),
        ("POST", "/fhir/$process-message"): example("health-visitor-message.json"),
        ("POST", "/fhir/ServiceRequest"): example("gp-service-request.json"),
    }
    searches = {("GET", "/fhir/Task"): tokens}
    return Records(by_identity, bodies, {("GET", "/v1/referrals"): tokens}, searches)


SAMIRA = "7e4b2d1a-9c8f-4a6e-b3d2-1f0e9d8c7b65"
RUTH = "cf91767d-e4f5-4021-8f43-7808a8a7bd4c"  # Willesden


def _triaged(publish, locality):
    received = ReferralReceived.model_validate(
        ReferralReceived.examples()[0] | {"referral_id": str(uuid4()), "family_id": str(uuid4())}
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
                "decided_at": datetime.now(UTC),
            }
        )
    )
    return str(case_id)


def _allocation_records(client, publish) -> Records:
    head = bearer(client.settings, COLUMNS["head"])
    inside, outside = _triaged(publish, "brent-harlesden"), _triaged(publish, "brent-willesden")
    # The authority-wide head works cases of its own: auto-allocating may move a case
    # to another locality's team, which would change whose scope it is in.
    heads = _triaged(publish, "brent-harlesden"), _triaged(publish, "brent-willesden")
    queued = {inside, outside, *heads}
    _wait(
        lambda: (
            queued
            <= {i["case_id"] for i in client.get("/v1/allocations", headers=head).json()["items"]}
        ),
        "the cases queued",
    )
    panels = {}
    meets_on = (date.today() + timedelta(days=7)).isoformat()
    panel_body = {
        locality: {
            "locality": locality,
            "name": "Early intervention coordination group",
            "meets_on": meets_on,
            "members": [{"name": "Grace Mensah", "agency": "Brent early help"}],
        }
        for locality in ("brent-harlesden", "brent-willesden")
    }
    for locality, body in panel_body.items():
        made = client.post("/v1/panels", json=body, headers=head)
        assert made.status_code == 201, made.text
        panels[locality] = made.json()["panel_id"]
    registry = client.get("/v1/registry", headers=head).json()["authorities"]
    brent = next(a for a in registry if a["authority_id"] == "brent")

    def entry(kind, key, value):
        return next(e for e in brent[kind] if e[key] == value)

    scoped = {
        "case_id": (inside, outside),
        "worker_id": (SAMIRA, RUTH),
        "panel_id": (panels["brent-harlesden"], panels["brent-willesden"]),
        "family_id": (str(uuid4()),) * 2,
    }
    by_identity = {column: scoped for column in COLUMNS}
    by_identity["head"] = scoped | {"case_id": heads}
    provider = brent["providers"][0]
    entries = {
        "localities": ("locality_id", "brent-harlesden", "brent-willesden"),
        "teams": ("team_id", "harlesden-early-help", "willesden-early-help"),
        "workers": ("worker_id", SAMIRA, RUTH),
    }
    bodies = {
        ("POST", "/v1/panels"): (panel_body["brent-harlesden"], panel_body["brent-willesden"]),
        ("POST", "/v1/panels/{panel_id}/decisions"): {
            "case_id": inside,
            "package": [
                {
                    "provider_id": "brent-family-wellbeing-centres",
                    "service_id": "triple-p-group",
                    "start_date": meets_on,
                    "intensity": "standard",
                }
            ],
            "lead_professional": {"worker_id": SAMIRA},
            "members_present": [{"name": "Grace Mensah", "agency": "Brent early help"}],
        },
        ("PUT", "/v1/registry/providers/{entry_id}"): provider,
    }
    entry_ids = {}
    for plural, (key, mine, theirs) in entries.items():
        path = f"/v1/registry/{plural}/{{entry_id}}"
        bodies[("PUT", path)] = (entry(plural, key, mine), entry(plural, key, theirs))
        entry_ids[path] = (mine, theirs)
    entry_ids["/v1/registry/providers/{entry_id}"] = (provider["provider_id"],) * 2
    tokens = {
        ("GET", "/v1/allocations"): (inside, outside),
        ("GET", "/v1/allocations/timeliness"): ("brent-harlesden", "brent-willesden"),
        ("GET", "/v1/caseloads"): (SAMIRA, RUTH),
        ("GET", "/v1/registry"): (SAMIRA, RUTH),
        ("GET", "/v1/panels"): scoped["panel_id"],
    }
    records = Records(
        by_identity, bodies, {op: dict.fromkeys(COLUMNS, t) for op, t in tokens.items()}
    )
    records.entry_ids = entry_ids
    return records


def _caseplan_records(client, publish) -> Records:
    example = CaseAllocated.example()
    inside = example.model_copy(  # Harlesden, Samira's team, Samira leads
        update={"family_id": uuid4(), "case_id": uuid4(), "allocated_at": datetime.now(UTC)}
    )
    outside = example.model_copy(
        update={
            "family_id": uuid4(),
            "case_id": uuid4(),
            "allocated_at": datetime.now(UTC),
            "locality": "brent-wembley",
            "team_id": "wembley-early-help",
            "lead_professional": example.lead_professional.model_copy(
                update={"worker_id": uuid4(), "name": "Tomasz Nowak",
                        "email": "tomasz.nowak@brent.example.gov.uk", "staff_client_id": None}
            ),
        }
    )  # fmt: skip
    publish(inside)
    publish(outside)
    head = bearer(client.settings, COLUMNS["head"])
    for case in (inside, outside):
        _wait(lambda case=case: client.get(f"/v1/cases/{case.case_id}", headers=head)
              .status_code == 200, f"case {case.case_id}")  # fmt: skip
        draft = client.post(f"/v1/cases/{case.case_id}/assessments", json={}, headers=head)
        assert draft.status_code == 200, draft.text
    scoped = {
        "case_id": (str(inside.case_id), str(outside.case_id)),
        "family_id": (str(inside.family_id), str(outside.family_id)),
        # Who is taken off a case's team: the one its documented example adds.
        "member_id": ("brent-health-visiting",) * 2,
    }
    later = (date.today() + timedelta(days=30)).isoformat()
    need = str(uuid4())
    bodies = {
        ("POST", "/v1/cases/{case_id}/assessments"): {},
        ("POST", "/v1/cases/{case_id}/actions"): {
            "what": "Weekly check-in",
            "who": "School attendance officer",
            "by_when": later,
        },
        ("POST", "/v1/cases/{case_id}/outcomes"): {"need_id": need, "statement": "Attends."},
        ("POST", "/v1/cases/{case_id}/reviews"): {
            "progress": [{"need_id": need, "rating": "same", "note": "-"}],
            "next_review_date": later,
        },
        ("POST", "/v1/cases/{case_id}/step-up"): {
            "reason": "Police notification",
            "factors": ["3A"],
            "social_care_contact": {
                "name": "Chris",
                "team": "Brent MASH",
                "phone": "020 7946 0900",
            },
        },
        ("POST", "/v1/cases/{case_id}/closure"): {"reason": "disengaged", "outcomes": []},
        ("POST", "/v1/step-downs"): {
            "social_care_reference": f"CSC-{uuid4().hex[:8]}",
            "children": [
                {
                    "person_id": str(uuid4()),
                    "given_name": "Amira",
                    "family_name": "Hassan",
                    "date_of_birth": "2015-06-12",
                    "postcode": "NW10 8SE",
                }
            ],
            "reason": "Needs met below the threshold.",
            "social_care_summary": "Child in need plan ended.",
        },
    }
    tokens = {("GET", "/v1/cases"): dict.fromkeys(COLUMNS, scoped["case_id"])}
    return Records(dict.fromkeys(COLUMNS, scoped), bodies, tokens)


def _notifications_records(client) -> Records:
    subscription_of = {}
    body = {
        "event_types": ["earlyhelp.referral.*"],
        "delivery": {"type": "partner_topic"},
    }
    for column in ("school", "health", "police", "social"):
        made = client.post("/v1/subscriptions", json=body,
                           headers=bearer(client.settings, COLUMNS[column]))  # fmt: skip
        assert made.status_code == 201, made.text
        subscription_of[column] = made.json()["subscription_id"]
    by_identity, tokens = {}, {}
    for column in COLUMNS:
        mine = subscription_of.get(column, subscription_of["school"])
        other = subscription_of["police" if column == "school" else "school"]
        by_identity[column] = {
            "subscription_id": (mine, other),
            "delivery_id": (f"msg_{uuid4().hex}",) * 2,
            "family_id": (str(uuid4()), str(uuid4())),
        }
        tokens[column] = (mine, other)
    bodies = {("POST", "/v1/subscriptions"): body}
    return Records(by_identity, bodies, {("GET", "/v1/subscriptions"): tokens})


# --- the check --------------------------------------------------------------------------


# The dead letters are the service's, not any family's: one id serves in and out of scope.
NO_DEAD_LETTER = "earlyhelp.nowhere.dlq:0:0"


def _call(client, method, template, params, body, headers, query=None):
    path = template
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    return client.request(method, path, json=body, headers=headers, params=query)


def _check(client, service, records):
    expected = TABLE[service]
    operations = _operations(client.app)
    assert sorted(expected) == sorted(operations), "operations missing from MATRIX, or extra"
    failures = []
    for method, template in operations:
        for column, client_id in COLUMNS.items():
            cell = expected[(method, template)][column]
            headers = bearer(client.settings, client_id)
            scoped = records.by_identity[column]
            entry_ids = getattr(records, "entry_ids", {}).get(template)
            body = records.bodies.get((method, template)) or _example(client, method, template)
            searched = records.searches.get((method, template), {}).get(column)
            answers = []
            for side in (0, 1):
                params = {name: values[side] for name, values in scoped.items()}
                params["dead_letter_id"] = NO_DEAD_LETTER
                if entry_ids:
                    params["entry_id"] = entry_ids[side]
                side_body = body[side] if isinstance(body, tuple) else body
                if method in ("POST", "PUT") and side_body is None:
                    side_body = {}
                query = {"based-on": searched[side]} if searched else None
                answers.append(_call(client, method, template, params, side_body, headers, query))
            listed = records.tokens.get((method, template), {}).get(column)
            problem = (
                _search_verdict(cell, answers, searched)
                if searched
                else _verdict(cell, answers, listed)
            )
            if problem:
                failures.append(f"{method} {template} as {column} ({cell}): {problem}")
    assert failures == []


def _verdict(cell, answers, listed) -> str | None:
    statuses = [answer.status_code for answer in answers]
    if cell == "-":
        return None if statuses == [403, 403] else f"expected 403, got {statuses}"
    if 401 in statuses:
        return f"got 401: {statuses}"
    if cell == "a":
        if 403 in statuses:
            return f"refused: {statuses}"
        if listed and not all(token in answers[0].text for token in listed):
            return "a list left a record out"
        return None
    inside, outside = answers
    if cell == "r":
        return None if statuses == [403, 404] else f"expected 403 then 404, got {statuses}"
    if inside.status_code in (403, 404):
        return f"in scope refused: {inside.status_code} {inside.text[:200]}"
    if listed:
        if listed[0] not in inside.text or listed[1] in inside.text:
            return "a list showed what is outside the scope, or left out what is in it"
        return None
    wanted = 422 if cell == "v" else 404
    if outside.status_code != wanted:
        return f"out of scope answered {outside.status_code}, not {wanted}"
    return None


def _search_verdict(cell, answers, searched) -> str | None:
    """A search for the record in scope finds it; one for the record outside finds
    nothing (`s`) or finds it too (`a`): a search never refuses a record it cannot show."""
    statuses = [answer.status_code for answer in answers]
    if cell == "-":
        return None if statuses == [403, 403] else f"expected 403, got {statuses}"
    if statuses != [200, 200]:
        return f"expected 200 twice, got {statuses}"
    found = [
        token in str(answer.json().get("entry", []))  # not the self link, which echoes the query
        for token, answer in zip(searched, answers, strict=True)
    ]
    wanted = [True, cell == "a"]
    return None if found == wanted else f"found {found}, expected {wanted}"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_intake(service_client):
    from intake.service import definition

    client = service_client(definition)
    _check(client, "intake", _intake_records(client))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_allocation(service_client, publish):
    from allocation.service import definition

    client = service_client(definition)
    _check(client, "allocation", _allocation_records(client, publish))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_caseplan(service_client, publish):
    from caseplan.service import definition

    client = service_client(definition)
    _check(client, "caseplan", _caseplan_records(client, publish))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_notifications(database_url, kafka_bootstrap, tmp_path):
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from hub.migrations import upgrade
    from hub.testing import settings_for
    from notifications.service import create_app, definition
    from notifications.settings import NotificationsSettings

    upgrade(definition.migrations, database_url)
    settings = settings_for("notifications", database_url, kafka_bootstrap, tmp_path)
    # SQLite is the embedded default, whose key is generated; elsewhere keys are configured.
    keys = (
        {} if database_url.startswith("sqlite") else {"secret_keys": Fernet.generate_key().decode()}
    )
    own = NotificationsSettings(mailbox_dir=tmp_path / "mailbox", **keys)
    app = create_app(settings, own)
    with TestClient(app) as client:
        client.settings = settings
        _check(client, "notifications", _notifications_records(client))
