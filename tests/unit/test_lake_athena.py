"""The Athena view (terraform/modules/datalake/events_view.sql) sees the rows recloop's readers see.

No Athena runs here. DuckDB stands in for it, honestly within these limits: the view's text is
run unchanged except for Athena's "$path" pseudo-column (DuckDB's `filename`) and the lake root;
each Glue table is built the way Athena reads its location, every object under the partition
folders except names starting with "_" or "." (Athena's hidden files); and the objects are
downloaded from an S3 lake (moto), where compaction tags replaced objects instead of removing
them, so the view must exclude them itself, as it must on S3 until lifecycle expires them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb  # a dev dependency: a missing one must fail, not skip the view's test
import pytest

from lake_fixtures import Crash, CrashingStore
from recloop.events import EVENT_SCHEMA, Event, EventType, events_to_table
from recloop.lake import Lake, compact, compact_hour, layout

VIEW = Path(__file__).resolve().parents[2] / "terraform/modules/datalake/events_view.sql"
HOUR0 = datetime(2024, 3, 1, 10, tzinfo=UTC)


def _events(ids: range, hour: datetime, prefix: str, user: str = "u") -> Any:
    return events_to_table(
        [
            Event(
                event_id=f"{prefix}{i}",
                event_type=EventType.CLICK,
                timestamp=hour + timedelta(seconds=11 * i % 3600),
                user_id=f"{user}{i % 5}",
                item_id=f"i{i % 9}",
            )
            for i in ids
        ]
    )


def _download(client: Any, bucket: str, dest: Path) -> None:
    """The bucket's lake/ objects as files (what Athena lists), retired ones included."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="lake/"):
        for item in page.get("Contents", []):
            target = dest / item["Key"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def _visible(root: Path, top: str, suffix: str) -> list[str]:
    return sorted(
        str(p)
        for p in (root / top).rglob(f"*{suffix}")
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def _athena_rows(bucket: Path) -> list[tuple[Any, ...]]:
    root = bucket / "lake"
    con = duckdb.connect()
    hive = "hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR}"
    names = ", ".join(f'"{f.name}"' for f in EVENT_SCHEMA)
    raw = _visible(root, "events", ".parquet")
    con.execute(
        f"CREATE VIEW events_raw AS SELECT *, filename FROM read_parquet({raw!r}, {hive}, "
        "filename = true, union_by_name = true)"
    )
    compacted = _visible(root, "compacted", ".parquet")
    if compacted:
        con.execute(
            f"CREATE VIEW events_compacted AS SELECT * FROM read_parquet({compacted!r}, "
            f"{hive}, filename = true, union_by_name = true)"
        )
    else:
        con.execute("CREATE VIEW events_compacted AS SELECT * FROM events_raw WHERE false")
    manifests = _visible(root, "manifests", ".json")
    columns = (
        "{'generation': 'INTEGER', 'token': 'VARCHAR', 'kind': 'VARCHAR', 'key': 'VARCHAR', "
        "'rows': 'BIGINT', 'bytes': 'BIGINT', 'sha256': 'VARCHAR'}"
    )
    if manifests:
        con.execute(
            f"CREATE VIEW lake_manifests AS SELECT * FROM read_json({manifests!r}, "
            f"format = 'newline_delimited', columns = {columns}, {hive})"
        )
    else:
        con.execute(
            "CREATE TABLE lake_manifests (generation INTEGER, token VARCHAR, kind VARCHAR, "
            "key VARCHAR, rows BIGINT, bytes BIGINT, sha256 VARCHAR, dt VARCHAR, hour VARCHAR)"
        )
    sql = VIEW.read_text().replace('"$path"', "filename")
    sql = sql.replace("${root}", str(root)).replace("${columns}", names)
    con.execute(sql)
    return sorted(
        con.execute(
            'SELECT event_id, epoch_ms("timestamp"), user_id, item_id, dt FROM events'
        ).fetchall()
    )


def _recloop_rows(lake: Lake) -> list[tuple[Any, ...]]:
    table, _ = lake.read_events(dedupe=False)
    return sorted(
        (
            r["event_id"],
            int(r["timestamp"].timestamp() * 1000),
            r["user_id"],
            r["item_id"],
            f"{r['timestamp']:%Y-%m-%d}",
        )
        for r in table.to_pylist()
    )


def test_athena_sees_the_rows_recloop_reads_at_every_stage(
    s3_bucket: tuple[Any, str], tmp_path: Path
) -> None:
    client, bucket = s3_bucket
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    stage = 0

    def same_rows(expected: int) -> None:
        nonlocal stage
        stage += 1
        root = tmp_path / f"stage{stage}"
        _download(client, bucket, root)
        ours = _recloop_rows(lake)
        assert len(ours) == expected
        assert _athena_rows(root) == ours, f"stage {stage}"

    for h in range(3):
        hour = HOUR0 + timedelta(hours=h)
        for b in range(4):
            first = (b - 1 if b == 2 else b) * 10  # batch 2 repeats batch 1's events
            lake.write_events(_events(range(first, first + 10), hour, f"h{h}e"), f"s{h}-{b}")
    same_rows(90)  # raw only: the repeated batch counted once

    compact(lake.store, now=HOUR0 + timedelta(hours=5))
    same_rows(90)  # compacted; the raw objects are still there, tagged

    # Known ids again, with other content (a client resending edited events): the first copy,
    # the compacted one, wins for recloop's readers and must for Athena too.
    lake.write_events(_events(range(5, 15), HOUR0, "h0e", user="resent"), "redelivered")
    lake.write_events(_events(range(3), HOUR0, "late"), "late")
    same_rows(93)  # late events beside a compacted hour

    # A compaction killed before its commit left a data file and a sources file behind.
    with pytest.raises(Crash):
        compact_hour(CrashingStore(lake.store, at=3), HOUR0)
    same_rows(93)

    compact(lake.store, now=HOUR0 + timedelta(days=4))  # the day rolled up
    lake.write_events(_events(range(3, 6), HOUR0 + timedelta(hours=1), "late"), "late-2")
    compact_hour(lake.store, HOUR0 + timedelta(hours=1))  # an hour compacted after the roll-up
    same_rows(96)
    assert any(p.unit.day for p in lake.hours())
    assert layout.DAY == "day"
