"""Reading a weblog file (or stdin) in bounded chunks with content-derived batch ids."""

from __future__ import annotations

import gzip
import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from recloop.errors import RecloopError


class InputFileError(RecloopError):
    """The file to ingest is missing or unreadable."""


@dataclass(frozen=True)
class LineChunk:
    """Up to `chunk_size` lines, their (label:line number) ids and a content-derived batch id."""

    batch_id: str
    records: list[tuple[str, bytes]]
    bytes_read: int


@contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """The file as bytes ('-' is stdin; a .gz name is decompressed on the fly)."""
    if str(path) == "-":
        yield sys.stdin.buffer
        return
    source = Path(path)
    if not source.is_file():
        raise InputFileError(f"{source} is not a file")
    try:
        with gzip.open(source, "rb") if source.suffix == ".gz" else source.open("rb") as handle:
            yield handle  # type: ignore[misc]
    except OSError as exc:
        raise InputFileError(f"cannot read {source}: {exc}") from exc


def _bounded_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[bytes, list[bytes]]]:
    """Lines of at most `limit` + 1 bytes kept, plus every piece read (for the digest).

    A line longer than that is cut (it will be quarantined as oversized) and the rest of it
    is read and dropped piece by piece, so one huge line cannot exhaust memory.
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        pieces = [line]
        if len(line) > limit and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(1 << 20)
                if not rest:
                    break
                pieces.append(rest)
                if rest.endswith(b"\n"):
                    break
        yield line, pieces


def line_chunks(
    stream: BinaryIO, label: str, chunk_size: int, max_line_bytes: int = 1 << 20
) -> Iterator[LineChunk]:
    """Lines in chunks; the batch id hashes the chunk's bytes, so a re-run gets the same ids."""
    if chunk_size < 1:
        raise InputFileError(f"chunk size must be positive, got {chunk_size}")
    records: list[tuple[str, bytes]] = []
    digest = hashlib.sha256()
    size = 0
    for number, (line, pieces) in enumerate(_bounded_lines(stream, max_line_bytes), start=1):
        for piece in pieces:
            digest.update(piece)
            size += len(piece)
        body = line.rstrip(b"\r\n")
        if body.strip():
            records.append((f"{label}:{number}", body))
        if number % chunk_size == 0:
            yield LineChunk(f"file-{digest.hexdigest()[:32]}", records, size)
            records, digest, size = [], hashlib.sha256(), 0
    if records or size:
        yield LineChunk(f"file-{digest.hexdigest()[:32]}", records, size)
