"""Object stores under the lake: a local folder or an S3 prefix, behind one small interface.

S3 goes through boto3 rather than pyarrow.fs because the lake relies on conditional writes
(If-None-Match: *) for exactly-once objects, which pyarrow.fs does not expose, and because
moto can then test the very calls production makes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from recloop.errors import ConfigError, LakeError, TransientStoreError

# Bytes per read when an object is streamed into a file (a model's arrays can be large).
_COPY_CHUNK = 1024 * 1024
# S3 error codes a retry may cure; anything else is permanent.
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeTooSkewed",
        "ConditionalRequestConflict",
        "500",
        "502",
        "503",
        "504",
    }
)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class ObjectStore(Protocol):
    """Keys are '/'-separated paths relative to the store's root."""

    uri: str

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write `data` unless `key` exists; True when written, False when it was there."""
        ...

    def get(self, key: str) -> bytes: ...

    def copy_to(self, key: str, path: Path) -> None:
        """Write the object into the file `path` without holding all of it in memory."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""
        ...

    def retire(self, key: str) -> None:
        """Mark an object no reader needs any more for expiry after a grace period."""
        ...


# Where a local store keeps retired objects (see LocalStore.retire).
RETIRED_DIR = ".retired"


class LocalStore:
    """A folder on the local disk (file:// URIs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = root.as_uri()

    def put_if_absent(self, key: str, data: bytes) -> bool:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, then link into place: link() fails if the name exists, so a reader
        # never sees a half-written object and a second writer never replaces the first.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise LakeError(f"no object {key!r} in {self.uri}") from exc

    def copy_to(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError as exc:
            raise LakeError(f"no object {key!r} in {self.uri}") from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        base = self.root / prefix
        # A prefix may end inside a name (dt=2024-01-0), so walk from its folder and filter.
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return
        found = []
        # scandir with the sizes it returns, not Path.rglob + stat: listing thousands of small
        # objects was most of a compacted window's read time.
        pending = [(str(folder), folder.relative_to(self.root).as_posix())]
        while pending:
            path, rel = pending.pop()
            with os.scandir(path) as entries:
                for entry in entries:
                    key = f"{rel}/{entry.name}" if rel != "." else entry.name
                    if entry.is_dir():
                        if entry.name != RETIRED_DIR:
                            pending.append((entry.path, key))
                    elif not entry.name.startswith(".tmp-") and key.startswith(prefix):
                        found.append(ObjectInfo(key, entry.stat().st_size))
        yield from sorted(found, key=lambda info: info.key)

    def retire(self, key: str) -> None:
        """Move the object under .retired/: no listing shows it, a GET by key still finds it
        (a reader that listed before the move can finish), and the folder can be emptied
        whenever no reader runs: a laptop's stand-in for S3's lifecycle expiry."""
        source = self.root / key
        target = self.root / RETIRED_DIR / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            source.replace(target)
        except FileNotFoundError:
            return  # retired already

    def _path(self, key: str) -> Path:
        path = self.root / key
        if not path.exists():
            retired = self.root / RETIRED_DIR / key
            if retired.exists():
                return retired
        return path


# S3 lifecycle expires objects carrying this tag after the grace period (terraform datalake).
RETIRED_TAG: Any = {"Key": "recloop-lake", "Value": "retired"}


class S3Store:
    """An S3 prefix (s3://bucket/prefix URIs), through boto3."""

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = client if client is not None else boto3.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code == "PreconditionFailed" or status == "412":
                return False
            if code in _TRANSIENT_CODES or status in _TRANSIENT_CODES:
                raise TransientStoreError(f"put {key!r}: {code or status}") from exc
            raise LakeError(f"put {key!r}: {code or status}") from exc
        except BotoCoreError as exc:  # connection resets, timeouts: worth a retry
            raise TransientStoreError(f"put {key!r}: {exc}") from exc
        return True

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())
        except ClientError as exc:
            raise LakeError(f"get {key!r} from {self.uri}: {exc}") from exc

    def copy_to(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            with path.open("wb") as handle:
                shutil.copyfileobj(body, handle, _COPY_CHUNK)
        except ClientError as exc:
            raise LakeError(f"get {key!r} from {self.uri}: {exc}") from exc

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], int(item["Size"]))

    def retire(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object_tagging(
                Bucket=self.bucket, Key=self._key(key), Tagging={"TagSet": [RETIRED_TAG]}
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404"):
                return  # expired already
            if code in _TRANSIENT_CODES:
                raise TransientStoreError(f"tag {key!r}: {code}") from exc
            raise LakeError(f"tag {key!r}: {code}") from exc
        except BotoCoreError as exc:
            raise TransientStoreError(f"tag {key!r}: {exc}") from exc


def store_from_uri(uri: str, s3_client: Any = None) -> ObjectStore:
    """The store a lake URI names: file:///path or s3://bucket/prefix."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ConfigError(f"{uri!r} names no bucket")
        return S3Store(parsed.netloc, parsed.path, client=s3_client)
    if parsed.scheme == "" and uri:
        return LocalStore(Path(uri).resolve())
    raise ConfigError(f"unsupported lake URI {uri!r}: use file:///path or s3://bucket/prefix")
