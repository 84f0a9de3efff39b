"""Kinesis Producer Library (KPL) aggregated records into their user records.

Logstash's kinesis output ships through the KPL, which by default packs many user records into
one Kinesis record: 4 magic bytes, a protobuf `AggregatedRecord`, and the MD5 of the protobuf.

    message AggregatedRecord {
      repeated string partition_key_table = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records = 3;
    }
    message Record {
      required uint64 partition_key_index = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes data = 3;
      repeated Tag tags = 4;
    }

Only `records[].data` is needed, so this reads the protobuf wire format directly instead of
depending on aws-kinesis-agg (unmaintained; its generated modules do not import under current
protobuf releases).
"""

from __future__ import annotations

import hashlib

KPL_MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST = 16


class AggregateError(ValueError):
    """The record carries the KPL magic but is not a well-formed aggregate."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise AggregateError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) pairs of one protobuf message; length-delimited values as bytes."""
    out: list[tuple[int, bytes | int]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise AggregateError("truncated field")
            out.append((number, buf[pos : pos + size]))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise AggregateError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise AggregateError("truncated field")
    return out


def is_aggregate(raw: bytes) -> bool:
    return raw[:4] == KPL_MAGIC


def deaggregate(raw: bytes) -> list[bytes]:
    """The user records' data, in order; AggregateError when the aggregate is corrupt."""
    if not is_aggregate(raw) or len(raw) < len(KPL_MAGIC) + _DIGEST:
        raise AggregateError("not a KPL aggregate")
    body, digest = raw[len(KPL_MAGIC) : -_DIGEST], raw[-_DIGEST:]
    if hashlib.md5(body, usedforsecurity=False).digest() != digest:
        raise AggregateError("checksum mismatch")
    records: list[bytes] = []
    for number, value in _fields(body):
        if number != 3 or not isinstance(value, bytes):
            continue
        data = [v for n, v in _fields(value) if n == 3 and isinstance(v, bytes)]
        if len(data) != 1:
            raise AggregateError("user record without data")
        records.append(data[0])
    return records
