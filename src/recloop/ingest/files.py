"""Reading a weblog file (or stdin) in bounded chunks with content-derived batch ids."""

from __future__ import annotations

import gzip
import hashlib
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from recloop.errors import RecloopError

_PIECE = 1 << 20  # the rest of an oversized line is read (and dropped) in pieces this size


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


def _bounded_lines(stream: BinaryIO, limit: int, digest: _Digest) -> Iterator[tuple[bytes, int]]:
    """Lines of at most `limit` + 1 bytes kept, and how many bytes each took in the stream.

    A line longer than that is cut (it will be quarantined as oversized) and the rest of it
    is read piece by piece into the digest and dropped, so one huge line costs a piece of
    memory, not its size. `digest` sees every byte read (the batch id hashes the content).
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        digest.update(line)
        size = len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(_PIECE)
                if not rest:
                    break
                digest.update(rest)
                size += len(rest)
                if rest.endswith(b"\n"):
                    break
        yield line, size


def line_chunks(
    stream: BinaryIO, label: str, chunk_size: int, max_line_bytes: int = 1 << 20
) -> Iterator[LineChunk]:
    """Lines in chunks; the batch id hashes the chunk's bytes, so a re-run gets the same ids."""
    if chunk_size < 1:
        raise InputFileError(f"chunk size must be positive, got {chunk_size}")
    records: list[tuple[str, bytes]] = []
    digest = _Digest()
    size = number = 0
    lines = _bounded_lines(stream, max_line_bytes, digest)
    failure: BaseException | None = None
    while True:
        try:
            line, taken = next(lines)
        except StopIteration:
            break
        except (EOFError, OSError, zlib.error) as exc:  # e.g. a truncated or corrupt .gz
            failure = exc
            break
        number += 1
        size += taken
        body = line.rstrip(b"\r\n")
        if body.strip():
            records.append((f"{label}:{number}", body))
        if number % chunk_size == 0:
            yield LineChunk(f"file-{digest.take()}", records, size)
            records, size = [], 0
    if records or size:  # what was read before a failure is ingested too
        yield LineChunk(f"file-{digest.take()}", records, size)
    if failure is not None:
        why = str(failure) or type(failure).__name__
        done = f"Lines 1-{number} were ingested." if number else "No line was read."
        raise InputFileError(
            f"{label}: unreadable after line {number} ({why}; a truncated or corrupt file?). "
            + done
        ) from failure


class _Digest:
    """The running SHA-256 of a chunk's bytes; `take` returns its id and starts the next."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def take(self) -> str:
        value = self._hash.hexdigest()[:32]
        self._hash = hashlib.sha256()
        return value
