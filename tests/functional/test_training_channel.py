"""The SageMaker train channel holds exactly the window's objects, and the job reads from it the
rows it would read from the lake.

SageMaker itself cannot run here: `_sagemaker_copy` does what its ManifestFile channel does
(documented behaviour: each listed key, joined to the manifest's prefix, is copied to the
channel folder under its key), with the real S3 calls against moto's server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from recloop.lake import QUARANTINE_SCHEMA, Lake, compact
from recloop.training.channel import channel_keys, write_channel_manifest
from training_fixtures import synthetic_events

START = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.fixture
def s3_server() -> Iterator[tuple[Any, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="recloop-data")
        yield client, "recloop-data"
    finally:
        server.stop()


def _sagemaker_copy(client: Any, manifest_uri: str, channel: Path) -> list[str]:
    """A ManifestFile channel's download: prefix + key -> <channel>/<key>."""
    bucket, key = manifest_uri.removeprefix("s3://").split("/", 1)
    entries = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    prefix = entries[0]["prefix"]
    assert prefix.endswith("/")
    copied = []
    for relative in entries[1:]:
        src_bucket, src_key = (prefix + relative).removeprefix("s3://").split("/", 1)
        target = channel / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=src_bucket, Key=src_key)["Body"].read())
        copied.append(src_key)
    return copied


def _rows(lake: Lake, lo: datetime, hi: datetime) -> list[Any]:
    table, _ = lake.read_events(lo, hi, columns=["event_id", "timestamp", "user_id", "item_id"])
    return sorted(table.to_pylist(), key=lambda r: r["event_id"])


def test_the_channel_is_the_window_and_reads_the_same_rows(
    s3_server: tuple[Any, str], tmp_path: Path
) -> None:
    client, bucket = s3_server
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    table = synthetic_events(seed=4, days=6, start=START.isoformat())
    # Many small objects, like Lambda invocations: one batch per 200 events.
    for offset in range(0, table.num_rows, 200):
        lake.write_events(table.slice(offset, 200), f"shard-{offset}")
    lake.write_quarantine(
        pa.table(
            {
                "received_at": [START + timedelta(days=2)],
                "source_id": ["x"],
                "reason": ["bad_json"],
                "detail": ["?"],
                "payload": [b"{"],
            },
            schema=QUARANTINE_SCHEMA,
        ),
        "q",
    )
    compact(lake.store, now=START + timedelta(days=3, hours=1), rollup_after=timedelta(days=1))
    lo, hi = START + timedelta(days=1, hours=6), START + timedelta(days=4)

    uri = write_channel_manifest(lake, lo, hi, f"s3://{bucket}/registry/jobs", "job-1", client)
    copied = _sagemaker_copy(client, uri, tmp_path / "train")

    assert copied == [f"lake/{k}" for k in channel_keys(lake, lo, hi)]
    assert not any("/quarantine/" in k for k in copied)
    # Only the window's days, and no replaced object: each copied data object is read.
    assert {k.split("/")[2] for k in copied} <= {"dt=2026-01-06", "dt=2026-01-07", "dt=2026-01-08"}
    read = [e.key for e in lake.read_events(lo, hi)[1].objects]
    assert sorted(f"lake/{k}" for k in read) == copied
    everything = [
        i["Key"] for i in client.list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"]
    ]
    assert len(copied) < len(everything) / 3

    channel_lake = Lake.from_uri((tmp_path / "train").as_uri())
    assert _rows(channel_lake, lo, hi) == _rows(lake, lo, hi)
    assert channel_lake.hour_span(lo, hi) == lake.hour_span(lo, hi)
