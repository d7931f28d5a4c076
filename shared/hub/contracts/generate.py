"""Generate the published contracts (JSON Schemas, AsyncAPI 3.0, README) from the event models.

    python -m hub.contracts.generate [--check] [--out DIR]

Output is deterministic, so `--check` (run in CI and in the tests) can tell stale files.
"""

import argparse
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from hub.contracts.base import PRODUCERS, EventData
from hub.contracts.codes import DataClassification
from hub.contracts.envelope import JSON_CONTENT_TYPE, SOURCE_PREFIX, SPECVERSION, schema_uri
from hub.contracts.registry import EVENT_TYPES
from hub.contracts.topics import SERVICE_TOPICS

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / "contracts"
SCHEMA_DIR = "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
PARTNER_CHANNEL = "partnerEvents"
PARTNER_ADDRESS = "earlyhelp.partner.{partnerId}.v1"
REGENERATE_COMMAND = "make contracts"


def event_models() -> list[type[EventData]]:
    """Every event model by producer in pipeline order, then in the order its module declares."""
    return sorted(EVENT_TYPES.values(), key=lambda model: PRODUCERS.index(model.producer))


def _description(model: type[EventData]) -> str:
    return inspect.cleandoc(model.__doc__ or "")


def event_schema(model: type[EventData]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.update(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": schema_uri(model.event_type),
            "title": model.__name__,
            "description": _description(model),
            "x-event-type": model.event_type,
            "x-schema-version": model.schema_version,
            "x-producer": model.producer,
        }
    )
    return schema


def _headers_schema() -> dict[str, Any]:
    properties: dict[str, dict[str, Any]] = {
        "ce_specversion": {"type": "string", "const": SPECVERSION},
        "ce_id": {
            "type": "string",
            "format": "uuid",
            "description": "Stable event id: consumers ignore an id they have handled.",
        },
        "ce_source": {"type": "string", "description": f"{SOURCE_PREFIX}<producing service>"},
        "ce_type": {"type": "string", "description": "The event type; see each message."},
        "ce_time": {"type": "string", "format": "date-time", "description": "UTC, RFC 3339."},
        "ce_subject": {"type": "string", "description": "Id of the referral or case."},
        "content-type": {"type": "string", "const": JSON_CONTENT_TYPE},
        "ce_dataschema": {"type": "string", "format": "uri"},
        "ce_partitionkey": {
            "type": "string",
            "format": "uuid",
            "description": "The family id, equal to the record key.",
        },
        "ce_sequence": {
            "type": "string",
            "pattern": "^[0-9]{20}$",
            "description": "Position in the producer's event store, zero-padded to sort.",
        },
        "ce_follows": {
            "type": "string",
            "format": "uuid",
            "description": (
                "The id of the family's event this one follows: the latest event of the family "
                "its producer knew (its own or consumed) when it decided. A consumer of several "
                "topics that has not yet seen that event knows exactly what it is waiting for."
            ),
        },
        "ce_dataclassification": {
            "type": "string",
            "enum": [code.value for code in DataClassification],
            "description": "Handling a consumer must honour or refuse the event.",
        },
        "traceparent": {"type": "string", "description": "W3C trace context."},
        "tracestate": {"type": "string", "description": "W3C trace context."},
    }
    optional = {"ce_sequence", "ce_follows", "traceparent", "tracestate"}
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode.",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


def _message(model: type[EventData]) -> dict[str, Any]:
    return {
        "name": model.event_type,
        "title": model.__name__,
        "summary": _description(model).splitlines()[0],
        "contentType": JSON_CONTENT_TYPE,
        "headers": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEventsHeaders"},
                {
                    "properties": {
                        "ce_type": {"const": model.event_type},
                        "ce_source": {"const": SOURCE_PREFIX + model.producer},
                        "ce_dataschema": {"const": schema_uri(model.event_type)},
                    }
                },
            ]
        },
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "format": "uuid", "description": "The family id."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "examples": [
            {"name": f"example{number}", "payload": example}
            for number, example in enumerate(model.examples(), start=1)
        ],
        "x-producer": model.producer,
    }


def _message_refs(channel: str, models: list[type[EventData]]) -> list[dict[str, str]]:
    return [{"$ref": f"#/channels/{channel}/messages/{model.__name__}"} for model in models]


def asyncapi_document() -> dict[str, Any]:
    models = event_models()
    _, definitions = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = {**definitions["$defs"], "CloudEventsHeaders": _headers_schema()}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for service in PRODUCERS:
        produced = [model for model in models if model.producer == service]
        channels[service] = {
            "address": SERVICE_TOPICS[service],
            "title": f"{service.capitalize()} events",
            "description": f"Written only by the {service} service; keyed by family id.",
            "messages": {
                model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}
                for model in produced
            },
        }
        operations[f"send{service.capitalize()}Events"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{service}"},
            "summary": f"The {service} service publishes its events (outbox relay).",
            "messages": _message_refs(service, produced),
        }
    channels[PARTNER_CHANNEL] = {
        "address": PARTNER_ADDRESS,
        "title": "Partner events",
        "description": (
            "What one partner is allowed to see, as its information-sharing agreement and the"
            " family's consent permit; written by the notifications service."
        ),
        "parameters": {
            "partnerId": {
                "description": "The partner's id: lower-case letters, digits and '-'.",
                "examples": ["harlesden-primary-school"],
            }
        },
        "messages": {
            model.__name__: {"$ref": f"#/components/messages/{model.__name__}"} for model in models
        },
    }
    operations["receivePartnerEvents"] = {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{PARTNER_CHANNEL}"},
        "summary": "A partner system consumes the events it is allowed to see.",
        "messages": _message_refs(PARTNER_CHANNEL, models),
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Early Help Hub events",
            "version": "1.0.0",
            "description": (
                "Events of the Early Help Hub: CloudEvents 1.0 in Kafka binary mode, keyed by"
                f" family id. Generated from the models in shared/hub/contracts; run"
                f" `{REGENERATE_COMMAND}` after changing them."
            ),
        },
        "defaultContentType": JSON_CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded broker of a local run.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": {model.__name__: _message(model) for model in models},
            "schemas": schemas,
        },
    }


def readme() -> str:
    rows = "\n".join(
        f"| `{model.event_type}` | {model.producer} | `{SERVICE_TOPICS[model.producer]}` |"
        f" [{model.event_type}.json]({SCHEMA_DIR}/{model.event_type}.json) |"
        f" {_description(model).splitlines()[0]} |"
        for model in event_models()
    )
    topics = "\n".join(
        f"| `{topic}` | {service} service |" for service, topic in SERVICE_TOPICS.items()
    )
    return f"""# Event contracts

Generated by `python -m hub.contracts.generate` from the models in `shared/hub/contracts/`.
Do not edit these files: change the models and run `{REGENERATE_COMMAND}`. The tests
(`test_generated_contracts_are_up_to_date`) and
`python -m hub.contracts.generate --check` fail while they are stale.

- `asyncapi.yaml`: AsyncAPI {ASYNCAPI_VERSION}: channels, operations and messages.
- `{SCHEMA_DIR}/<event type>.json`: JSON Schema (2020-12) of each event's `data`.

## Envelope

CloudEvents {SPECVERSION} in Kafka binary mode: attributes in `ce_*` headers, the JSON `data`
as the record value, the family id as the record key (and `ce_partitionkey`), so that
each family's events stay in order. `ce_sequence` is the producer's store position,
`ce_follows` (absent on a family's first event) the id of the family's event this one
follows as its producer knew the family, so that a family's order can be restored across
topics, `ce_dataclassification` is `restricted` unless stated, `traceparent` and `tracestate`
are plain headers.

## Topics

| topic | written by |
|---|---|
{topics}
| `{PARTNER_ADDRESS}` | notifications service: what one partner may see |
| `<topic>.dlq` | a consumer of `<topic>`: messages it could not handle, error in headers |

## Event types

| event type | producer | topic | schema | meaning |
|---|---|---|---|---|
{rows}
"""


def _dump_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Every generated file, by path relative to the output directory."""
    files = {
        f"{SCHEMA_DIR}/{model.event_type}.json": _dump_json(event_schema(model))
        for model in event_models()
    }
    # The JSON round trip gives every node its own object, so YAML writes no anchors.
    document = json.loads(json.dumps(asyncapi_document()))
    files["asyncapi.yaml"] = yaml.safe_dump(
        document, sort_keys=True, allow_unicode=True, default_flow_style=False, width=100
    )
    files["README.md"] = readme()
    return files


def _stale_schemas(out: Path, rendered: dict[str, str]) -> list[Path]:
    return [
        path
        for path in sorted((out / SCHEMA_DIR).glob("*.json"))
        if f"{SCHEMA_DIR}/{path.name}" not in rendered
    ]


def differences(out: Path, rendered: dict[str, str]) -> list[str]:
    """One line per file in `out` that is missing, different or no longer generated."""
    problems = []
    for relative, content in rendered.items():
        path = out / relative
        if not path.exists():
            problems.append(f"{relative}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{relative}: differs from the models")
    problems += [f"{SCHEMA_DIR}/{path.name}: stale" for path in _stale_schemas(out, rendered)]
    return problems


def write(out: Path, rendered: dict[str, str]) -> None:
    for path in _stale_schemas(out, rendered):
        path.unlink()
    for relative, content in rendered.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.contracts.generate", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are stale"
    )
    args = parser.parse_args(argv)
    rendered = render()
    if not args.check:
        write(args.out, rendered)
        print(f"wrote {len(rendered)} contract files to {args.out}")
        return 0
    problems = differences(args.out, rendered)
    for problem in problems:
        print(f"{args.out / problem}", file=sys.stderr)
    if problems:
        print(f"contracts are stale: run `{REGENERATE_COMMAND}`", file=sys.stderr)
        return 1
    print(f"contracts in {args.out} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
