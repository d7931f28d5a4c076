import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from hub.contracts import generate
from hub.contracts.envelope import envelope_for, schema_uri, to_kafka
from hub.contracts.registry import EVENT_TYPES

COMMITTED = generate.DEFAULT_OUT


def test_generated_contracts_are_up_to_date(tmp_path):
    generate.main(["--out", str(tmp_path)])

    def files(root: Path) -> set[Path]:
        return {path.relative_to(root) for path in root.rglob("*") if path.is_file()}

    stale = sorted(
        str(relative)
        for relative in files(tmp_path) | files(COMMITTED)
        if not (COMMITTED / relative).is_file()
        or not (tmp_path / relative).is_file()
        or (COMMITTED / relative).read_bytes() != (tmp_path / relative).read_bytes()
    )
    assert not stale, f"contracts/ is stale ({', '.join(stale)}): run `make contracts`"


def test_check_reports_missing_changed_and_stale_files(tmp_path, capsys):
    generate.main(["--out", str(tmp_path)])
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "asyncapi.yaml").write_text("asyncapi: 2.6.0\n")
    (tmp_path / "README.md").unlink()
    (tmp_path / "schemas" / "earlyhelp.case.reopened.v1.json").write_text("{}\n")
    assert generate.main(["--check", "--out", str(tmp_path)]) == 1
    report = capsys.readouterr().err
    assert "asyncapi.yaml: differs" in report
    assert "README.md: missing" in report
    assert "earlyhelp.case.reopened.v1.json: stale" in report
    assert "make contracts" in report
    generate.main(["--out", str(tmp_path)])
    assert not (tmp_path / "schemas" / "earlyhelp.case.reopened.v1.json").exists()
    assert generate.main(["--check", "--out", str(tmp_path)]) == 0


def test_output_is_deterministic():
    first, second = generate.render(), generate.render()
    assert first == second
    assert all(content.endswith("\n") for content in first.values())


def load_schema(event_type: str) -> dict[str, Any]:
    return json.loads((COMMITTED / "schemas" / f"{event_type}.json").read_text())


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_each_schema_is_valid_and_accepts_the_examples(model):
    schema = load_schema(model.event_type)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == schema_uri(model.event_type)
    assert schema["title"] == model.__name__ and schema["description"]
    assert schema["x-event-type"] == model.event_type
    assert schema["x-schema-version"] == model.schema_version
    assert schema["x-producer"] == model.producer
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for example in schema["examples"]:
        validator.validate(example)
        validator.validate(model.model_validate(example).model_dump(mode="json"))


def test_schemas_refuse_what_the_models_refuse():
    schema = load_schema("earlyhelp.referral.received.v1")
    validator = Draft202012Validator(schema)
    example = json.loads(json.dumps(schema["examples"][0]))
    example["children"][0]["nhs_number"] = "943 476 5919"
    example["urgency"] = "whenever"
    example["colour"] = "red"
    assert len(list(validator.iter_errors(example))) == 3


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return yaml.safe_load((COMMITTED / "asyncapi.yaml").read_text())


def test_asyncapi_document_describes_every_event(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    messages = asyncapi["components"]["messages"]
    assert sorted(message["name"] for message in messages.values()) == sorted(EVENT_TYPES)
    for model in EVENT_TYPES.values():
        message = messages[model.__name__]
        assert message["contentType"] == "application/json"
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}


def test_asyncapi_channels_and_operations(asyncapi):
    channels, operations = asyncapi["channels"], asyncapi["operations"]
    assert {name: channel["address"] for name, channel in channels.items()} == {
        "intake": "earlyhelp.intake.v1",
        "allocation": "earlyhelp.allocation.v1",
        "caseplan": "earlyhelp.caseplan.v1",
        "partnerEvents": "earlyhelp.partner.{partnerId}.v1",
    }
    assert set(channels["partnerEvents"]["parameters"]) == {"partnerId"}
    assert len(channels["partnerEvents"]["messages"]) == len(EVENT_TYPES)
    for model in EVENT_TYPES.values():
        assert model.__name__ in channels[model.producer]["messages"]
    assert {name: op["action"] for name, op in operations.items()} == {
        "sendIntakeEvents": "send",
        "sendAllocationEvents": "send",
        "sendCaseplanEvents": "send",
        "receivePartnerEvents": "receive",
    }


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [ref for key, value in node.items() for ref in _refs(value)] + (
            [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        )
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_asyncapi_references_all_resolve(asyncapi):
    for ref in _refs(asyncapi):
        assert ref.startswith("#/"), ref
        target: Any = asyncapi
        for part in ref[2:].split("/"):
            assert part in target, f"unresolved $ref {ref}"
            target = target[part]


def test_asyncapi_message_headers_are_the_cloudevents_binding(asyncapi):
    headers = asyncapi["components"]["schemas"]["CloudEventsHeaders"]
    Draft202012Validator.check_schema(headers)
    assert {"ce_id", "ce_source", "ce_specversion", "ce_type", "ce_time"} <= set(
        headers["required"]
    )
    assert all(re.fullmatch(r"ce_[a-z]+|content-type|trace(parent|state)", name)
               for name in headers["properties"])  # fmt: skip


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_asyncapi_headers_accept_what_the_envelope_writes(asyncapi, model):
    message_headers = asyncapi["components"]["messages"][model.__name__]["headers"]
    schema = {
        "allOf": [
            asyncapi["components"]["schemas"]["CloudEventsHeaders"],
            message_headers["allOf"][1],
        ]
    }
    envelope = envelope_for(
        model.example(),
        event_id="5f0d8c1e-9a2b-4c3d-8e4f-a5b6c7d8e9f0",
        source_service=model.producer,
        time=datetime(2025, 3, 3, 9, 42, tzinfo=UTC),
        sequence=7,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    headers = {name: value.decode() for name, value in to_kafka(envelope).headers}
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        headers
    )


def test_readme_lists_every_event_type():
    readme = (COMMITTED / "README.md").read_text()
    assert "make contracts" in readme
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in readme
