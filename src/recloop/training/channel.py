"""The SageMaker "train" channel: exactly a window's lake objects, as an S3 manifest file.

A ManifestFile channel lists the objects SageMaker copies to /opt/ml/input/data/train, each
under its key relative to the manifest's prefix. recloop lists what a reader of the window reads
(recloop.lake: each hour's committed compaction and the raw objects it does not cover, with the
markers and sources files that say so), so the channel is a small lake of the window alone: not
the lake's whole history, not the quarantine, not the objects compaction replaced. The job
reads it as a file:// lake and sees the rows it would have read from S3.

The prefix always ends with "/": SageMaker joins it to each key, and an S3Prefix channel of
"s3://bucket/lake" (no slash) would list the prefix "lake", which the role's s3:prefix
condition ("lake/*") does not match, and which would take "lake-archive/..." along too.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from recloop.lake import Lake
from recloop.lake.store import store_from_uri
from recloop.training.pipeline import TrainError


def channel_keys(lake: Lake, start: datetime | None, end: datetime) -> list[str]:
    """The lake keys a reader of [start, end) reads, manifests included, in key order."""
    keys: set[str] = set()
    for part in lake.hours(start, end):
        keys.update(part.manifests)
        keys.update(part.keys)
    return sorted(keys)


def manifest_body(lake_uri: str, keys: list[str]) -> bytes:
    """A SageMaker manifest file: the prefix (with its "/"), then keys relative to it."""
    if not lake_uri.startswith("s3://"):
        raise TrainError(f"a SageMaker channel needs an s3:// lake, not {lake_uri!r}")
    entries: list[Any] = [{"prefix": lake_uri.rstrip("/") + "/"}, *keys]
    return json.dumps(entries, indent=0).encode()


def write_channel_manifest(
    lake: Lake,
    start: datetime | None,
    end: datetime,
    output_uri: str,
    name: str,
    s3_client: Any = None,
) -> str:
    """Write the window's manifest file under `output_uri`/channels/ and return its S3 URI."""
    keys = channel_keys(lake, start, end)
    if not keys:
        raise TrainError(f"the lake {lake.uri} has no events in the window")
    store = store_from_uri(output_uri, s3_client=s3_client)
    key = f"channels/{name}.manifest"
    if not store.put_if_absent(key, manifest_body(lake.uri, keys)):
        raise TrainError(f"{store.uri}/{key} exists already: pick another job name")
    return f"{store.uri}/{key}"
