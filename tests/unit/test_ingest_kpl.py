"""KPL aggregates (Logstash's kinesis output) are unpacked; corrupt ones are quarantined.

Aggregates are built with the real protobuf runtime from the KPL message schema, so the
hand-written wire-format reader is checked against an independent encoder.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from recloop.ingest.decode import Candidate, Rejected, decode_record
from recloop.ingest.kpl import KPL_MAGIC, AggregateError, deaggregate

protobuf = pytest.importorskip("google.protobuf")


def _classes():  # type: ignore[no-untyped-def]
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(
        name="kpl_test.proto", package="kpltest", syntax="proto2"
    )
    f = descriptor_pb2.FieldDescriptorProto
    tag = proto.message_type.add(name="Tag")
    tag.field.add(name="key", number=1, type=f.TYPE_STRING, label=f.LABEL_REQUIRED)
    tag.field.add(name="value", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    rec = proto.message_type.add(name="Record")
    rec.field.add(name="partition_key_index", number=1, type=f.TYPE_UINT64, label=f.LABEL_REQUIRED)
    rec.field.add(
        name="explicit_hash_key_index", number=2, type=f.TYPE_UINT64, label=f.LABEL_OPTIONAL
    )
    rec.field.add(name="data", number=3, type=f.TYPE_BYTES, label=f.LABEL_REQUIRED)
    rec.field.add(
        name="tags", number=4, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED, type_name=".kpltest.Tag"
    )
    agg = proto.message_type.add(name="AggregatedRecord")
    agg.field.add(name="partition_key_table", number=1, type=f.TYPE_STRING, label=f.LABEL_REPEATED)
    agg.field.add(
        name="explicit_hash_key_table", number=2, type=f.TYPE_STRING, label=f.LABEL_REPEATED
    )
    agg.field.add(
        name="records",
        number=3,
        type=f.TYPE_MESSAGE,
        label=f.LABEL_REPEATED,
        type_name=".kpltest.Record",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kpltest.AggregatedRecord"))


def aggregate(payloads: list[bytes]) -> bytes:
    """A KPL aggregated record as the KPL writes it: magic + protobuf + MD5(protobuf)."""
    message = _classes()()
    message.partition_key_table.extend(["pk-a", "pk-b"])
    message.explicit_hash_key_table.append("123456789")
    for i, data in enumerate(payloads):
        record = message.records.add(partition_key_index=i % 2, data=data)
        if i == 0:
            record.explicit_hash_key_index = 0
            record.tags.add(key="k", value="v")
    body = message.SerializeToString()
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def test_user_records_come_out_in_order() -> None:
    payloads = [b"first", b"", b"x" * 300, json.dumps({"a": 1}).encode()]
    assert deaggregate(aggregate(payloads)) == payloads


def test_an_aggregate_decodes_into_the_units_of_each_user_record() -> None:
    event = {
        "event_id": "e",
        "event_type": "view",
        "timestamp": "2024-01-01T00:00:00Z",
        "user_id": "u",
        "item_id": "i",
    }
    raw = aggregate([json.dumps(event).encode(), b"plain line", b"\xff"])
    units = decode_record(raw, 4096)
    assert [type(u).__name__ for u in units] == ["Candidate", "Candidate", "Rejected"]
    assert isinstance(units[0], Candidate) and units[0].data == event
    assert isinstance(units[2], Rejected) and units[2].reason == "not_utf8"


@pytest.mark.parametrize("damage", ["checksum", "truncated", "short"])
def test_corrupt_aggregates_are_rejected_whole(damage: str) -> None:
    raw = aggregate([b"one", b"two"])
    if damage == "checksum":
        raw = raw[:-1] + bytes([raw[-1] ^ 1])
    elif damage == "truncated":
        body = raw[4:-16][:-3]
        raw = KPL_MAGIC + body + hashlib.md5(body).digest()
    else:
        raw = KPL_MAGIC + b"\x01"
    with pytest.raises(AggregateError):
        deaggregate(raw)
    units = decode_record(raw, 4096)
    assert len(units) == 1 and isinstance(units[0], Rejected)
    assert units[0].reason == "malformed_aggregate" and units[0].payload == raw
