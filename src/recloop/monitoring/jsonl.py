"""An append-only JSON-lines log on file:// or s3://, shared by the decision and metrics logs.

On a local disk an append is one O_APPEND write, so concurrent writers never interleave within
a line. S3 has no append: the object is read, extended and written back only if its ETag is
unchanged (If-Match; If-None-Match for the first line), retried when another writer won. That
is fine for logs that grow by a line every few seconds or less; high-rate metrics belong in
CloudWatch (EMF), not here.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from recloop.errors import ConfigError
from recloop.monitoring.errors import LogConflictError, MonitorError

log = logging.getLogger(__name__)
_ATTEMPTS = 8


def _encode(records: Iterable[dict[str, Any]]) -> bytes:
    try:
        return b"".join(orjson.dumps(r) + b"\n" for r in records)
    except TypeError as exc:
        raise MonitorError(f"a log record is not JSON-serialisable: {exc}") from exc


def _decode(data: bytes, uri: str) -> list[dict[str, Any]]:
    records = []
    lines = data.split(b"\n")
    # Without a final newline the last line is a write still in progress: leave it.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("skipping malformed line %d of %s", number, uri)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class JsonLinesLog:
    """Append records (dicts) to one JSON-lines object and read them back in order."""

    def __init__(self, uri: str, s3_client: Any = None) -> None:
        parsed = urlparse(uri)
        self.uri = uri
        self._path: Path | None = None
        self._bucket = self._key = ""
        self._client = s3_client
        if parsed.scheme == "file" or (parsed.scheme == "" and uri):
            self._path = Path(unquote(parsed.path) if parsed.scheme else uri)
        elif parsed.scheme == "s3" and parsed.netloc and parsed.path.strip("/"):
            self._bucket, self._key = parsed.netloc, parsed.path.lstrip("/")
        else:
            raise ConfigError(f"unsupported log URI {uri!r}: use file:///path or s3://bucket/key")

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def append(self, *records: dict[str, Any]) -> None:
        """Append records, each as one line."""
        if not records:
            return
        data = _encode(records)
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            return
        self._append_s3(data)

    def _append_s3(self, data: bytes) -> None:
        from botocore.exceptions import ClientError

        client = self._s3()
        for attempt in range(_ATTEMPTS):
            old, etag = self._get_s3()
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                client.put_object(Bucket=self._bucket, Key=self._key, Body=old + data, **condition)
                return
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if (
                    code not in {"PreconditionFailed", "ConditionalRequestConflict"}
                    and status != 412
                ):
                    raise MonitorError(f"append to {self.uri}: {code or status}") from exc
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # another writer won: back off
        raise LogConflictError(f"append to {self.uri} lost {_ATTEMPTS} races in a row")

    def _get_s3(self) -> tuple[bytes, str | None]:
        from botocore.exceptions import ClientError

        try:
            response = self._s3().get_object(Bucket=self._bucket, Key=self._key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return b"", None
            raise MonitorError(f"read {self.uri}: {exc}") from exc
        return bytes(response["Body"].read()), str(response["ETag"])

    def read(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first (empty when the log does not exist yet)."""
        if self._path is not None:
            try:
                data = self._path.read_bytes()
            except FileNotFoundError:
                return []
        else:
            data, _ = self._get_s3()
        return _decode(data, self.uri)
