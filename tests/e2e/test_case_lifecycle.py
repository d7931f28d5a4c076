"""A family's case from a partner's referral to closure and a re-referral, across the four
service processes, every step through its owner's HTTP API and every hand-over through Kafka:

intake triages → allocation queues and allocates → intake tells the referrer and case plan
opens the case → case plan's completed assessment puts it before allocation's panel → the
panel's decision activates case plan's plan → reviews and closure → the closure reaches
intake, so the family's next referral is a re-referral of that case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import httpx
import pytest

from hub.contracts.topics import service_topic
from intake.schemas import TriageDecision
from tests.e2e.support import accepted, ce_id, post_referral, read_topic, referral_body
from tests.harness import Hub, count_rows, read_table, wait_for

pytestmark = pytest.mark.e2e

FRONT_DOOR, MANAGER, CHAIR = "front-door-demo", "harlesden-team-manager", "brent-panel-chair"
PRACTITIONER = "samira-okafor"
DECISION = TriageDecision.model_config["json_schema_extra"]["examples"][0]
WAIT_S = 90.0  # a bound, not a pace: generous for a loaded machine
TODAY = date.today()
ASSESSMENT = {
    "factors": ["3B", "4B"],
    "needs": [
        {"outcome": "good_education", "description": "Attendance has fallen to 82%."},
        {"outcome": "improved_family_relationships", "description": "Arguments at home."},
    ],
    "recommended_level_of_need": "early_help",
    "people": [
        {
            "role": role,
            "name": name,
            "findings": [
                {"domain": domain, "strengths": "Warm and caring", "needs": "Routines"}
                for domain in ("child_development", "parenting_capacity", "family_and_environment")
            ],
        }
        for role, name in (("child", "Amira Hassan"), ("parent_carer", "Leila Hassan"))
    ],
    "views": {"child": "Wants Mum to be happier.", "family": "Wants help with routines."},
    "complete": True,
}


def _ok(response: httpx.Response, hub: Hub, service: str, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.text}\n{hub.logs_tail([service])}"
    return response.json()


def _eventually(hub: Hub, service: str, what: str, found: Callable[[], object]) -> object:
    return wait_for(found, WAIT_S, lambda: f"{what}\n{hub.logs_tail([service])}")


def test_a_referral_becomes_a_case_that_is_planned_reviewed_closed_and_referred_again(
    hub: Hub, client: httpx.Client
) -> None:
    intake, allocation, caseplan = (hub.url(s) for s in ("intake", "allocation", "caseplan"))
    body = referral_body()
    # School-age children, so that auto-allocation's choice is Harlesden's early help team
    # (5-19) and never its early years team (0-5): the generated ages are random.
    for years, child in zip((8, 11), body["children"], strict=True):
        child["date_of_birth"] = (TODAY - timedelta(days=365 * years + 30)).isoformat()
    referral = accepted(post_referral(client, hub, body), hub)
    triaged = _ok(
        client.post(
            f"{intake}/v1/referrals/{referral.referral_id}/triage",
            json=DECISION,
            headers=hub.auth(FRONT_DOOR),
        ),
        hub,
        "intake",
    )
    case_id, family_id = triaged["triage"]["case_id"], triaged["family_id"]

    def queued() -> dict | None:
        page = _ok(
            client.get(
                f"{allocation}/v1/allocations",
                params={"status": "unallocated", "locality": "brent-harlesden", "limit": 200},
                headers=hub.auth(MANAGER),
            ),
            hub,
            "allocation",
        )
        return next((i for i in page["items"] if i["case_id"] == case_id), None)

    item = _eventually(hub, "allocation", f"case {case_id} never queued", queued)
    assert item["urgency"] == body["urgency"]

    allocated = _ok(
        client.post(
            f"{allocation}/v1/cases/{case_id}/allocation",
            json={"auto": True},
            headers=hub.auth(MANAGER) | {"Idempotency-Key": f"alloc-{case_id}"},
        ),
        hub,
        "allocation",
        201,
    )
    lead = allocated["lead_professional"]
    assert allocated["team_id"] == "harlesden-early-help"

    # The referrer hears who the lead professional is; case plan opens the case.
    def told() -> dict | None:
        view = client.get(intake + referral.location, headers=hub.auth()).json()
        return view if view["status"] == "allocated" else None

    view = _eventually(hub, "intake", "intake never heard of the allocation", told)
    assert view["allocation"]["lead_professional"]["name"] == lead["name"]

    def case_view(until: Callable[[dict], bool] = lambda _: True) -> Callable[[], dict | None]:
        def read() -> dict | None:
            response = client.get(f"{caseplan}/v1/cases/{case_id}", headers=hub.auth(MANAGER))
            if response.status_code != 200 or not until(response.json()):
                return None
            return response.json()

        return read

    opened = _eventually(hub, "caseplan", "case plan never opened the case", case_view())
    assert opened["status"] == "open" and opened["family_id"] == family_id

    panel_id = _ok(
        client.post(
            f"{allocation}/v1/panels",
            json={
                "locality": "brent-harlesden",
                "name": "Harlesden early intervention coordination group",
                "meets_on": (TODAY + timedelta(days=7)).isoformat(),
                "members": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
            },
            headers=hub.auth(CHAIR),
        ),
        hub,
        "allocation",
        201,
    )["panel_id"]
    assessed = _ok(
        client.post(
            f"{caseplan}/v1/cases/{case_id}/assessments",
            json=ASSESSMENT,
            headers=hub.auth(MANAGER),
        ),
        hub,
        "caseplan",
        201,
    )
    need_ids = [need["need_id"] for need in assessed["needs"]]

    def on_agenda() -> bool:
        agenda = client.get(f"{allocation}/v1/panels/{panel_id}", headers=hub.auth(CHAIR))
        return any(i["case_id"] == case_id for i in _ok(agenda, hub, "allocation")["agenda"])

    _eventually(hub, "allocation", "the assessed case never joined the panel", on_agenda)
    _ok(
        client.post(
            f"{allocation}/v1/panels/{panel_id}/decisions",
            json={
                "case_id": case_id,
                "package": [
                    {
                        "provider_id": "nw-london-talking-therapies",
                        "service_id": "adult-talking-therapies",
                        "start_date": (TODAY + timedelta(days=14)).isoformat(),
                        "intensity": "standard",
                    }
                ],
                "lead_professional": {"worker_id": lead["worker_id"]},
                "members_present": [{"name": "Grace Mensah", "agency": "Brent early help (chair)"}],
            },
            headers=hub.auth(CHAIR),
        ),
        hub,
        "allocation",
        201,
    )
    planned = _eventually(
        hub, "caseplan", "the plan never reached case plan", case_view(lambda v: v["package"])
    )
    assert planned["review_due"] is not None

    # The lead professional sees the case as theirs, reviews it and closes it.
    mine = client.get(
        f"{caseplan}/v1/cases", params={"lead_professional": "me"}, headers=hub.auth(PRACTITIONER)
    )
    assert case_id in {c["case_id"] for c in _ok(mine, hub, "caseplan")["items"]}
    for weeks, rating in ((6, "improved"), (12, "achieved")):
        _ok(
            client.post(
                f"{caseplan}/v1/cases/{case_id}/reviews",
                json={
                    "progress": [
                        {"need_id": n, "rating": rating, "note": "Seen at home"} for n in need_ids
                    ],
                    "next_review_date": (TODAY + timedelta(weeks=weeks)).isoformat(),
                },
                headers=hub.auth(PRACTITIONER),
            ),
            hub,
            "caseplan",
            201,
        )
    _ok(
        client.post(
            f"{caseplan}/v1/cases/{case_id}/closure",
            json={
                "reason": "needs_met",
                "outcomes": [{"need_id": n, "achieved": True} for n in need_ids],
            },
            headers=hub.auth(PRACTITIONER),
        ),
        hub,
        "caseplan",
        201,
    )

    allocation_events = [
        dict(r.headers)["ce_type"].decode()
        for r in read_topic(hub.bootstrap_servers, service_topic("allocation"))
        if dict(r.headers).get("ce_subject", b"").decode() == case_id and ce_id(r)
    ]
    assert allocation_events == [
        "earlyhelp.case.allocated.v1",
        "earlyhelp.panel.decision_recorded.v1",
    ]

    # The same children again: intake matches the family and, once case plan's closure
    # has reached it, records the closed case as the one this referral repeats.
    def re_referred() -> dict | None:
        again = accepted(post_referral(client, hub, body | {"partner_reference": None}), hub)
        seen = client.get(intake + again.location, headers=hub.auth(FRONT_DOOR)).json()
        triage = _ok(
            client.post(
                f"{intake}/v1/referrals/{again.referral_id}/triage",
                json=DECISION,
                headers=hub.auth(FRONT_DOOR),
            ),
            hub,
            "intake",
        )["triage"]
        return (seen, triage) if not triage["joins_open_case"] else None

    seen, triage = _eventually(hub, "intake", "the closure never reached intake", re_referred)
    assert seen["family_id"] == family_id
    assert seen["matching"]["matched_existing_family"] is True
    assert seen["matching"]["re_referral_of_case_id"] == case_id
    assert triage["case_id"] != case_id  # a new case; the closed one stays closed

    chronology = _ok(
        client.get(
            f"{caseplan}/v1/families/{family_id}/chronology",
            params={"limit": 200},
            headers=hub.auth(FRONT_DOOR),
        ),
        hub,
        "caseplan",
    )
    types = [entry["event_type"] for entry in chronology["entries"]]
    for expected in (
        "earlyhelp.referral.received.v1",
        "earlyhelp.referral.triaged.v1",
        "earlyhelp.case.allocated.v1",
        "earlyhelp.assessment.completed.v1",
        "earlyhelp.panel.decision_recorded.v1",
        "earlyhelp.plan.reviewed.v1",
        "earlyhelp.case.closed.v1",
    ):
        assert expected in types, f"{expected} missing from the chronology: {types}"
    assert types.count("earlyhelp.plan.reviewed.v1") == 2
    involved = {(party["kind"], party["name"]) for party in chronology["involved"]}
    assert ("lead_professional", lead["name"]) in involved

    def reported() -> dict | None:
        report = _ok(
            client.get(
                f"{caseplan}/v1/reports/performance",
                params={"locality": "brent-harlesden", "from": TODAY.isoformat()},
                headers=hub.auth(MANAGER),
            ),
            hub,
            "caseplan",
        )
        # Both referrals, once the re-referral's triage has reached case plan too.
        return report if report["referrals_by_route"].get("early_help", 0) >= 2 else None

    report = _eventually(hub, "caseplan", "the report never counted both referrals", reported)
    assert report["reviews"] == report["reviews_on_time"] == 2
    assert report["closures_by_reason"] == {"needs_met": 1}
    for stage in ("referral_to_triage", "triage_to_allocation", "allocation_to_assessment"):
        assert report[stage]["cases"] >= 1, stage


IG = "information-governance-officer"
# A value that must reach the page as text, never as markup.
MARKUP = '<script>alert("x")</script> & <b>bold</b>'


def test_a_subject_access_request_gathers_the_person_s_records_from_all_four_services(
    hub: Hub, client: httpx.Client
) -> None:
    """The information governance officer asks intake, by NHS number and by person id;
    intake asks the other three with the officer's token; one answer, JSON and HTML."""
    intake, caseplan = hub.url("intake"), hub.url("caseplan")
    subscribed = client.post(
        f"{hub.url('notifications')}/v1/subscriptions",
        json={"event_types": ["earlyhelp.referral.*"], "delivery": {"type": "partner_topic"}},
        headers=hub.auth(),
    )
    _ok(subscribed, hub, "notifications", 201)
    body = referral_body()
    body["concerns"]["description"] = MARKUP
    nhs_number = body["children"][0]["nhs_number"]
    referral = accepted(post_referral(client, hub, body), hub)
    family_id = referral.family_id
    _ok(
        client.post(
            f"{intake}/v1/referrals/{referral.referral_id}/triage",
            json=DECISION,
            headers=hub.auth(FRONT_DOOR),
        ),
        hub,
        "intake",
    )
    for service, table, wanted in (
        ("allocation", "allocation_cases", 1),
        ("caseplan", "chronology_entries", 2),
        ("notifications", "deliveries", 1),
    ):
        _eventually(
            hub,
            service,
            f"{service} never recorded the family in {table}",
            lambda service=service, table=table, wanted=wanted: (
                count_rows(hub.database_url(service), table, family_id=family_id) >= wanted
            ),
        )
    # A read of the family's chronology by the front door: the answer lists it.
    _ok(
        client.get(f"{caseplan}/v1/families/{family_id}/chronology", headers=hub.auth(FRONT_DOOR)),
        hub,
        "caseplan",
    )

    by_number = _ok(
        client.post(
            f"{intake}/v1/subject-access/people-by-nhs-number",
            json={"nhs_number": nhs_number},
            headers=hub.auth(IG),
        ),
        hub,
        "intake",
    )

    (person,) = by_number["people"]
    assert person["nhs_number"] == nhs_number and by_number["families"] == [family_id]
    parts = {part["service"]: part for part in by_number["services"]}
    assert set(parts) == {"intake", "allocation", "caseplan", "notifications"}
    assert all(part["family_id"] == family_id for part in parts.values())

    def rows(service: str, section: str) -> list[dict]:
        return next(s["rows"] for s in parts[service]["sections"] if s["name"] == section)

    assert [r["referral_id"] for r in rows("intake", "referrals")] == [referral.referral_id]
    assert rows("intake", "referrals")[0]["status"] == "triaged"
    assert parts["intake"]["events"][0]["data"]["concerns"]["description"] == MARKUP
    assert len(rows("allocation", "cases")) == 1
    assert {e["event_type"] for e in rows("caseplan", "chronology")} >= {
        "earlyhelp.referral.received.v1",
        "earlyhelp.referral.triaged.v1",
    }
    disclosures = rows("notifications", "deliveries")
    assert {d["partner_id"] for d in disclosures} == {"harlesden-primary-school"}
    assert "earlyhelp.referral.received.v1" in {d["event_type"] for d in disclosures}
    readers = {(r["actor"], r["resource_type"]) for r in parts["caseplan"]["access_log"]}
    assert (FRONT_DOOR, "family_chronology") in readers
    # Every service audited the officer's read of its part; intake audited the request.
    for service in ("allocation", "caseplan", "notifications"):
        assert read_table(hub.database_url(service), "audit_log", actor=IG), service
    asked = read_table(hub.database_url("intake"), "audit_log", actor=IG, action="subject_access")
    assert {(r["resource_type"], r["resource_id"]) for r in asked} == {
        ("person", person["person_id"]),
        ("family", family_id),
    }

    page = client.get(
        f"{intake}/v1/subject-access/people/{person['person_id']}",
        params={"format": "html"},
        headers=hub.auth(IG),
    )
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and "<b>bold" not in page.text
    assert "&lt;script&gt;" in page.text and "&amp; &lt;b&gt;bold" in page.text
    for service in ("intake", "allocation", "caseplan", "notifications"):
        assert f"{service}: family {family_id}" in page.text

    refused = client.get(
        f"{intake}/v1/subject-access/people/{person['person_id']}", headers=hub.auth(FRONT_DOOR)
    )
    assert refused.status_code == 403
