"""Memory per unit is bounded: a 200 MiB line is quarantined by its prefix, never held whole."""

from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

from recloop.config import Settings
from recloop.ingest import Ingestor
from recloop.ingest.files import line_chunks
from recloop.ingest.redact import MAX_PAYLOAD_BYTES
from recloop.lake import Lake

MIB = 1 << 20


class HugeLine(io.RawIOBase):
    """A stream holding one `size`-byte line and then a short one, generated as it is read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.tail = b'\n{"after": true}\n'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left > 0:
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
            return n
        n = min(len(buffer), len(self.tail))
        buffer[:n] = self.tail[:n]
        self.tail = self.tail[n:]
        return n


def test_a_200_mib_line_costs_a_bounded_amount_of_memory() -> None:
    stream = io.BufferedReader(HugeLine(200 * MIB), buffer_size=64 * 1024)
    tracemalloc.start()
    try:
        chunks = list(line_chunks(stream, "huge", chunk_size=10, max_line_bytes=256 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB  # the line is 200 MiB: it was never held whole
    records = [record for chunk in chunks for record in chunk.records]
    assert [len(body) for _, body in records] == [256 * 1024 + 1, len(b'{"after": true}')]
    assert sum(chunk.bytes_read for chunk in chunks) == 200 * MIB + len(b'\n{"after": true}\n')


def test_an_oversized_line_is_quarantined_by_its_redacted_prefix(
    tmp_path: Path, lake_uri: str
) -> None:
    path = tmp_path / "big.log.gz"
    big = b'{"ip": "192.0.2.7", "padding": "' + b"y" * (3 * MIB) + b'"}'
    path.write_bytes(gzip.compress(big + b"\n" + b"not a log line\n"))
    lake = Lake.from_uri(lake_uri)
    report = Ingestor(lake, Settings()).ingest_file(path)
    assert report.quarantined == {"oversized": 1, "unsupported_format": 1}
    rows = {r["reason"]: r["payload"] for r in lake.read_quarantine().to_pylist()}
    assert len(rows["oversized"]) == MAX_PAYLOAD_BYTES
    assert rows["oversized"].startswith(b'{"ip": "<ip>", "padding": "yyy')


def test_a_file_name_that_is_not_utf8_still_ingests(tmp_path: Path, lake_uri: str) -> None:
    import os

    name = os.fsdecode(b"weblog-\xff.log")  # a surrogate escape, as Linux hands it over
    path = tmp_path / name
    path.write_bytes(b"not a log line\n")
    lake = Lake.from_uri(lake_uri)
    report = Ingestor(lake, Settings()).ingest_file(path)
    assert report.quarantined == {"unsupported_format": 1}
    assert lake.read_quarantine().column("source_id").to_pylist() == ["weblog-?.log:1"]
