"""CloudEvents 1.0 envelope and its Kafka binary-mode mapping (attributes in `ce_*` headers).

The mapping is hand-written rather than taken from cloudevents.core.bindings.kafka: that
binding folds headers into a dict (hiding repeated headers), re-serialises `data` instead of
keeping the producer's bytes, and accepts any specversion, so it cannot name precisely why a
message is undecodable, which the dead-letter queue needs.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from pydantic import ValidationError

from hub.contracts.base import EventData
from hub.contracts.codes import DataClassification
from hub.contracts.registry import UnknownEventType, event_model

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
SCHEMA_BASE_URI = "https://schemas.earlyhelp.example/events/"
SOURCE_PREFIX = "/earlyhelp/"
# Zero-padded so that sequences sort lexically, as CloudEvents' sequence extension expects.
SEQUENCE_DIGITS = 20

_REQUIRED_ATTRIBUTES = ("id", "source", "specversion", "type", "time")
_ENVELOPE_ATTRIBUTES = frozenset(
    {
        *_REQUIRED_ATTRIBUTES,
        "subject",
        "dataschema",
        "partitionkey",
        "sequence",
        "dataclassification",
        "datacontenttype",
        "data",
    }
)
_PLAIN_HEADERS = ("content-type", "traceparent", "tracestate")
# Binary mode carries these as the content-type header and the record value.
_CARRIED_OUTSIDE_HEADERS = ("datacontenttype", "data")
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_JSON_KINDS = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def schema_uri(event_type: str) -> str:
    """The `dataschema` of an event type: where its JSON Schema is published."""
    return f"{SCHEMA_BASE_URI}{event_type}.json"


class UndecodableMessage(ValueError):
    """A message that no retry can fix: it belongs in the dead-letter queue with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    """One CloudEvent whose `data` is the JSON of an `EventData`, kept as the producer's bytes."""

    id: str
    type: str
    source: str
    time: datetime
    partitionkey: str
    data: bytes
    subject: str | None = None
    dataschema: str | None = None
    sequence: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    dataclassification: DataClassification = DataClassification.RESTRICTED
    datacontenttype: str = JSON_CONTENT_TYPE
    specversion: str = SPECVERSION
    extensions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("Envelope.time must be timezone-aware")
        object.__setattr__(self, "time", self.time.astimezone(UTC))
        for name in self.extensions:
            if not _ATTRIBUTE_NAME.fullmatch(name) or name in _ENVELOPE_ATTRIBUTES:
                raise ValueError(f"{name!r} cannot be a CloudEvents extension attribute name")

    def decode_data(self) -> EventData:
        """The event, validated by its registered model; UndecodableMessage if it cannot be."""
        try:
            model = event_model(self.type)
        except UnknownEventType as exc:
            raise UndecodableMessage(str(exc)) from exc
        try:
            event = model.model_validate_json(self.data)
        except ValidationError as exc:
            raise UndecodableMessage(f"data is not a valid {self.type}: {_describe(exc)}") from exc
        if str(event.family_id) != self.partitionkey:
            raise UndecodableMessage("data.family_id does not match the partitionkey")
        if self.subject is not None and event.subject() != self.subject:
            raise UndecodableMessage("the subject does not match the id in the data")
        return event


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def envelope_for(
    event: EventData,
    *,
    event_id: str,
    source_service: str,
    time: datetime,
    sequence: int | None,
    traceparent: str | None = None,
    tracestate: str | None = None,
) -> Envelope:
    """Wrap an event for publishing. `sequence` is the producer's store position."""
    if source_service != event.producer:
        raise ValueError(
            f"{event.event_type} is published by {event.producer}, not {source_service}"
        )
    try:
        UUID(event_id)
    except ValueError:
        raise ValueError(f"event_id {event_id!r} is not a UUID") from None
    if sequence is not None and not 0 <= sequence < 10**SEQUENCE_DIGITS:
        raise ValueError(f"sequence must be between 0 and {SEQUENCE_DIGITS} digits")
    if traceparent is not None and not _TRACEPARENT.fullmatch(traceparent):
        raise ValueError(f"traceparent {traceparent!r} is not W3C trace context")
    return Envelope(
        id=event_id,
        type=event.event_type,
        source=SOURCE_PREFIX + source_service,
        time=time,
        partitionkey=str(event.family_id),
        data=event.model_dump_json().encode(),
        subject=event.subject(),
        dataschema=schema_uri(event.event_type),
        sequence=None if sequence is None else f"{sequence:0{SEQUENCE_DIGITS}d}",
        traceparent=traceparent,
        tracestate=tracestate,
    )


def to_kafka(envelope: Envelope) -> KafkaRecord:
    attributes: list[tuple[str, str | None]] = [
        ("ce_specversion", envelope.specversion),
        ("ce_id", envelope.id),
        ("ce_source", envelope.source),
        ("ce_type", envelope.type),
        ("ce_time", envelope.time.isoformat(timespec="microseconds").replace("+00:00", "Z")),
        ("ce_subject", envelope.subject),
        ("content-type", envelope.datacontenttype),
        ("ce_dataschema", envelope.dataschema),
        ("ce_partitionkey", envelope.partitionkey),
        ("ce_sequence", envelope.sequence),
        ("ce_dataclassification", str(envelope.dataclassification)),
        *((f"ce_{name}", value) for name, value in sorted(envelope.extensions.items())),
        ("traceparent", envelope.traceparent),
        ("tracestate", envelope.tracestate),
    ]
    return KafkaRecord(
        key=envelope.partitionkey.encode(),
        value=envelope.data,
        headers=[(name, value.encode()) for name, value in attributes if value is not None],
    )


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> Envelope:
    """Read a binary-mode record. Raises UndecodableMessage naming the first problem found."""
    header_values = _decode_headers(headers)
    attributes = {
        name.removeprefix("ce_"): text
        for name, text in header_values.items()
        if name.startswith("ce_")
    }
    missing = [f"ce_{name}" for name in _REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise UndecodableMessage(f"missing required header(s): {', '.join(missing)}")
    for name in ("id", "source", "type"):
        if not attributes[name]:
            raise UndecodableMessage(f"header ce_{name} is empty")
    if attributes["specversion"] != SPECVERSION:
        raise UndecodableMessage(
            f"unsupported ce_specversion {attributes['specversion']!r}; expected {SPECVERSION}"
        )
    content_type = header_values.get("content-type", JSON_CONTENT_TYPE)
    if content_type.split(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        raise UndecodableMessage(f"unsupported content-type {content_type!r}")
    for name in _CARRIED_OUTSIDE_HEADERS:
        if name in attributes:
            raise UndecodableMessage(f"header ce_{name} is not allowed in binary mode")
    extensions = {
        name: text for name, text in attributes.items() if name not in _ENVELOPE_ATTRIBUTES
    }
    for name in extensions:
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise UndecodableMessage(f"header ce_{name} is not a valid CloudEvents attribute name")
    return Envelope(
        id=attributes["id"],
        type=attributes["type"],
        source=attributes["source"],
        time=_parse_time(attributes["time"]),
        partitionkey=_partition_key(key, attributes.get("partitionkey")),
        data=_json_object(value),
        subject=attributes.get("subject"),
        dataschema=attributes.get("dataschema"),
        sequence=attributes.get("sequence"),
        traceparent=header_values.get("traceparent"),
        tracestate=header_values.get("tracestate"),
        dataclassification=_classification(attributes.get("dataclassification")),
        datacontenttype=content_type,
        extensions=extensions,
    )


def _decode_headers(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    """The headers the envelope reads; others (a DLQ's error headers, say) are not ours to judge."""
    decoded: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if not name.startswith("ce_") and name not in _PLAIN_HEADERS:
            continue
        if name in decoded:
            raise UndecodableMessage(f"header {name} appears more than once")
        if raw_value is None:
            raise UndecodableMessage(f"header {name} has no value")
        try:
            decoded[name] = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise UndecodableMessage(f"header {name} is not UTF-8") from None
    return decoded


def _parse_time(text: str) -> datetime:
    if not _RFC3339.fullmatch(text.upper()):
        raise UndecodableMessage(f"ce_time {text!r} is not an RFC 3339 timestamp with an offset")
    try:
        return datetime.fromisoformat(text.upper())
    except ValueError:
        raise UndecodableMessage(f"ce_time {text!r} is not a real date and time") from None


def _partition_key(key: bytes | None, header: str | None) -> str:
    try:
        key_text = None if key is None else key.decode("utf-8")
    except UnicodeDecodeError:
        raise UndecodableMessage("record key is not UTF-8") from None
    if header is not None and key_text is not None and header != key_text:
        raise UndecodableMessage("record key and ce_partitionkey differ")
    partition_key = header if header is not None else key_text
    if not partition_key:
        raise UndecodableMessage("no partition key: neither a record key nor ce_partitionkey")
    return partition_key


def _json_object(value: bytes | None) -> bytes:
    if value is None:
        raise UndecodableMessage("record has no value")
    try:
        parsed = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise UndecodableMessage("value is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise UndecodableMessage(f"value is not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise UndecodableMessage(f"value is a JSON {_JSON_KINDS[type(parsed)]}, not an object")
    return value


def _classification(text: str | None) -> DataClassification:
    if text is None:
        return DataClassification.RESTRICTED
    try:
        return DataClassification(text)
    except ValueError:
        raise UndecodableMessage(f"unknown ce_dataclassification {text!r}") from None


def _describe(error: ValidationError) -> str:
    # Locations and messages only: the input values are personal data.
    return "; ".join(
        f"{'.'.join(map(str, detail['loc'])) or '(root)'}: {detail['msg']}"
        for detail in error.errors(include_input=False, include_url=False)
    )
