import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.contracts.caseplan import CaseClosed
from hub.contracts.codes import DataClassification
from hub.contracts.envelope import (
    Envelope,
    UndecodableMessage,
    envelope_for,
    from_kafka,
    schema_uri,
    to_kafka,
)
from hub.contracts.intake import ReferralReceived
from hub.contracts.registry import EVENT_TYPES

EVENT_ID = "5f0d8c1e-9a2b-4c3d-8e4f-a5b6c7d8e9f0"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TIME = datetime(2025, 3, 3, 9, 42, 0, 123456, tzinfo=UTC)


def referral_envelope(**overrides) -> Envelope:
    arguments = {
        "event_id": EVENT_ID,
        "source_service": "intake",
        "time": TIME,
        "sequence": 42,
        "traceparent": TRACEPARENT,
        "tracestate": "hub=1",
    } | overrides
    return envelope_for(ReferralReceived.example(), **arguments)


def headers_of(envelope: Envelope) -> dict[str, bytes]:
    return dict(to_kafka(envelope).headers)


def decode(headers: dict[str, bytes | None], key: bytes | None = None, value=None) -> Envelope:
    record = to_kafka(referral_envelope())
    return from_kafka(
        record.key if key is None else key,
        record.value if value is None else value,
        list(headers.items()),
    )


def reason(**kwargs) -> str:
    with pytest.raises(UndecodableMessage) as caught:
        decode(**kwargs)
    return caught.value.reason


def test_envelope_for_fills_the_attributes_from_the_event():
    event = ReferralReceived.example()
    envelope = referral_envelope()
    assert envelope.id == EVENT_ID
    assert envelope.type == "earlyhelp.referral.received.v1"
    assert envelope.source == "/earlyhelp/intake"
    assert envelope.subject == str(event.referral_id)
    assert envelope.partitionkey == str(event.family_id)
    assert envelope.dataschema == schema_uri(envelope.type)
    assert envelope.dataschema.startswith("https://") and envelope.dataschema.endswith(".json")
    assert envelope.sequence == "00000000000000000042"
    assert envelope.dataclassification is DataClassification.RESTRICTED
    assert envelope.specversion == "1.0" and envelope.datacontenttype == "application/json"
    assert json.loads(envelope.data)["referral_id"] == str(event.referral_id)
    assert envelope.decode_data() == event


def test_sequences_sort_as_their_positions():
    positions = [9, 10, 1_000_000, 2]
    sequences = [referral_envelope(sequence=position).sequence for position in positions]
    assert sorted(sequences) == [sequences[3], sequences[0], sequences[1], sequences[2]]


def test_time_is_held_in_utc():
    tyneside_summer = timezone(timedelta(hours=1))
    envelope = referral_envelope(time=datetime(2025, 6, 1, 10, 0, tzinfo=tyneside_summer))
    assert envelope.time == datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    assert envelope.time.tzinfo is UTC


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source_service": "caseplan"}, "published by intake"),
        ({"event_id": "not-a-uuid"}, "not a UUID"),
        ({"time": datetime(2025, 3, 3, 9, 42)}, "timezone-aware"),
        ({"sequence": -1}, "sequence"),
        ({"traceparent": "garbage"}, "W3C"),
    ],
)
def test_envelope_for_refuses_bad_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        referral_envelope(**overrides)


def test_kafka_record_in_binary_mode():
    envelope = referral_envelope()
    record = to_kafka(envelope)
    assert record.key == envelope.partitionkey.encode()
    assert record.value == envelope.data
    assert dict(record.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": EVENT_ID.encode(),
        "ce_source": b"/earlyhelp/intake",
        "ce_type": b"earlyhelp.referral.received.v1",
        "ce_time": b"2025-03-03T09:42:00.123456Z",
        "ce_subject": envelope.subject.encode(),
        "content-type": b"application/json",
        "ce_dataschema": envelope.dataschema.encode(),
        "ce_partitionkey": envelope.partitionkey.encode(),
        "ce_sequence": b"00000000000000000042",
        "ce_dataclassification": b"restricted",
        "traceparent": TRACEPARENT.encode(),
        "tracestate": b"hub=1",
    }


@pytest.mark.parametrize("model", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_round_trip_through_kafka(model):
    event = model.example()
    envelope = envelope_for(
        event, event_id=EVENT_ID, source_service=model.producer, time=TIME, sequence=None
    )
    record = to_kafka(envelope)
    decoded = from_kafka(record.key, record.value, record.headers)
    assert decoded == envelope
    assert decoded.decode_data() == event


def test_round_trip_keeps_extensions_and_classification():
    envelope = replace(
        referral_envelope(),
        extensions={"dataref": "https://intake.example/v1/referrals/1", "datacategory": "pii"},
        dataclassification=DataClassification.CONFIDENTIAL,
    )
    record = to_kafka(envelope)
    assert from_kafka(record.key, record.value, record.headers) == envelope


def test_optional_attributes_may_be_absent():
    headers = headers_of(referral_envelope())
    for name in ["ce_subject", "ce_dataschema", "ce_sequence", "ce_partitionkey",
                 "ce_dataclassification", "content-type", "traceparent", "tracestate"]:  # fmt: skip
        del headers[name]
    envelope = decode(headers)
    assert envelope.partitionkey == referral_envelope().partitionkey  # from the record key
    assert envelope.dataclassification is DataClassification.RESTRICTED
    assert envelope.decode_data() == ReferralReceived.example()


def test_other_headers_are_ignored_and_names_are_case_insensitive():
    headers = headers_of(referral_envelope())
    headers["dlq_error"] = b"\xff binary from another client"
    headers["CE_TYPE"] = headers.pop("ce_type")
    assert decode(headers).type == "earlyhelp.referral.received.v1"


def test_time_with_an_offset_is_converted_to_utc():
    headers = headers_of(referral_envelope()) | {"ce_time": b"2025-03-03T10:42:00+01:00"}
    assert decode(headers).time == datetime(2025, 3, 3, 9, 42, tzinfo=UTC)


def test_unknown_event_types_decode_but_their_data_does_not():
    headers = headers_of(referral_envelope()) | {"ce_type": b"earlyhelp.case.reopened.v1"}
    envelope = decode(headers)
    assert envelope.type == "earlyhelp.case.reopened.v1"
    with pytest.raises(UndecodableMessage, match="unknown event type"):
        envelope.decode_data()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ce_id": None}, "missing required header(s): ce_id"),
        ({"ce_type": None, "ce_time": None}, "missing required header(s): ce_type, ce_time"),
        ({"ce_source": b""}, "header ce_source is empty"),
        ({"ce_specversion": b"0.3"}, "unsupported ce_specversion '0.3'"),
        ({"ce_subject": b"\xff\xfe"}, "header ce_subject is not UTF-8"),
        ({"ce_time": b"yesterday"}, "ce_time 'yesterday' is not an RFC 3339 timestamp"),
        ({"ce_time": b"2025-03-03T09:42:00"}, "with an offset"),
        ({"ce_time": b"2025-02-30T09:42:00Z"}, "not a real date and time"),
        ({"content-type": b"application/xml"}, "unsupported content-type"),
        ({"ce_dataclassification": b"secret"}, "unknown ce_dataclassification 'secret'"),
        ({"ce_partitionkey": b"another-family"}, "record key and ce_partitionkey differ"),
        ({"ce_datacontenttype": b"application/json"}, "not allowed in binary mode"),
        ({"ce_bad-name": b"x"}, "not a valid CloudEvents attribute name"),
    ],
)
def test_undecodable_headers(change, expected):
    headers = headers_of(referral_envelope())
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    assert expected in reason(headers=headers)


def test_repeated_and_valueless_headers():
    record = to_kafka(referral_envelope())
    with pytest.raises(UndecodableMessage, match="header ce_type appears more than once"):
        from_kafka(record.key, record.value, [*record.headers, ("ce_type", b"x")])
    with pytest.raises(UndecodableMessage, match="header tracestate has no value"):
        from_kafka(record.key, record.value, [*record.headers[:-1], ("tracestate", None)])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"", "value is not JSON"),
        (b"{not json", "value is not JSON"),
        (b"\xff{}", "value is not UTF-8"),
        (b"[1, 2]", "value is a JSON array, not an object"),
        (b"null", "value is a JSON null, not an object"),
        (b'"text"', "value is a JSON string, not an object"),
    ],
)
def test_undecodable_values(value, expected):
    assert expected in reason(headers=headers_of(referral_envelope()), value=value)


def test_a_record_without_a_value():
    record = to_kafka(referral_envelope())
    with pytest.raises(UndecodableMessage, match="record has no value"):
        from_kafka(record.key, None, record.headers)


def test_keys():
    headers = headers_of(referral_envelope())
    assert "record key is not UTF-8" in reason(headers=headers, key=b"\xff")
    del headers["ce_partitionkey"]
    record = to_kafka(referral_envelope())
    with pytest.raises(UndecodableMessage, match="no partition key"):
        from_kafka(None, record.value, list(headers.items()))


def test_data_that_does_not_match_its_type_names_the_fields_not_the_values():
    data = json.loads(referral_envelope().data)
    data["children"][0]["nhs_number"] = "9434765918"
    del data["urgency"]
    envelope = replace(referral_envelope(), data=json.dumps(data).encode())
    with pytest.raises(UndecodableMessage) as caught:
        envelope.decode_data()
    assert "children.0.nhs_number" in caught.value.reason
    assert "urgency: Field required" in caught.value.reason
    assert "9434765918" not in caught.value.reason


def test_data_must_agree_with_the_envelope():
    envelope = referral_envelope()
    with pytest.raises(UndecodableMessage, match="family_id does not match"):
        replace(envelope, partitionkey="00000000-0000-4000-8000-000000000000").decode_data()
    with pytest.raises(UndecodableMessage, match="subject does not match"):
        replace(envelope, subject="00000000-0000-4000-8000-000000000000").decode_data()
    closed = envelope_for(
        CaseClosed.example(), event_id=EVENT_ID, source_service="caseplan", time=TIME, sequence=1
    )
    with pytest.raises(UndecodableMessage, match=r"not a valid earlyhelp\.referral\.received\.v1"):
        replace(envelope, data=closed.data).decode_data()


def test_envelope_refuses_reserved_extension_names():
    with pytest.raises(ValueError, match="cannot be a CloudEvents extension"):
        replace(referral_envelope(), extensions={"subject": "x"})


def test_the_event_a_record_follows_reaches_the_consumer_and_must_be_an_event_id():
    from hub.envelopes import meta_of

    follows = "0b8e0b5c-3f7a-4d1e-9c2b-6a5d4e3f2a10"
    record = to_kafka(replace(referral_envelope(), extensions={"follows": follows}))
    assert ("ce_follows", follows.encode()) in record.headers
    envelope = from_kafka(record.key, record.value, record.headers)
    assert meta_of(envelope, origin="t/0", position=0).follows == follows
    assert meta_of(referral_envelope(), origin="t/0", position=0).follows is None
    with pytest.raises(UndecodableMessage, match="ce_follows is not an event id"):
        meta_of(replace(envelope, extensions={"follows": "Amira"}), origin="t/0", position=0)
