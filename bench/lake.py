"""The lake at a production object count: reads before and after compaction.

Writes `--hours` of weblog events through the real ingest path, the weblog_processor Lambda
handler (base64 Kinesis records -> Ingestor -> one Parquet object per invocation and hour), in
Kinesis-shaped invocations: `--shards` shards, each split `--parallelization` ways (the event
source mapping's parallelization factor), one invocation per lane per `--batch-window` seconds,
`--events-per-second` across the stream, and `--redelivered` of the invocations delivered twice
(as Lambda retries do). With the Terraform defaults (4 shards, factor 2, 5 s) that is 5,760
objects an hour; 18 hours are over 100,000 objects.

Then, on the same lake, before and after `compact` (recloop.lake.compaction):
  training read  the window as `recloop train` reads it (recloop.training.dataset.from_lake)
  monitor pass   one run_checks at the end of the data (engagement, silence, drift windows)
and checks that both read identical rows (a digest of the sorted rows; the monitor's report).
Also bytes per event of the raw objects and of the compacted files, and of the same objects
written with the earlier writer (plain zstd, the Arrow schema stored): before/after encodings.

--store file (a local folder) or s3 (moto's ThreadedMotoServer on 127.0.0.1, real HTTP).

Usage: flock /tmp/recloop-bench.lock .venv/bin/python bench/lake.py [--hours 18] [--store file]
The last line printed is one JSON object; `training_ratio` and `monitor_ratio` are the read
times before compaction over the times after, measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recloop.config import Settings
from recloop.events import EVENT_SCHEMA, conform
from recloop.ingest import Ingestor
from recloop.lake import Lake, compact
from recloop.lake.parquet import read_parquet
from recloop.monitoring import ModelInfo, run_checks
from recloop.training import dataset

REPO = Path(__file__).resolve().parents[1]
ITEMS = 20_000


class Context:
    function_name = "weblog_processor"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:0:function:weblog_processor"
    memory_limit_in_mb = 1024
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def _load_handler() -> Any:
    import importlib.util

    path = REPO / "lambdas" / "weblog_processor" / "handler.py"
    spec = importlib.util.spec_from_file_location("weblog_processor_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event(rng: random.Random, n: int, ts: datetime) -> dict[str, Any]:
    kind = rng.choices(("view", "click", "impression"), (0.6, 0.15, 0.25))[0]
    event: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "event_type": kind,
        "timestamp": ts.isoformat(),
        "session_id": f"s{rng.randrange(50_000)}",
        "context": {"page": f"/items/{rng.randrange(ITEMS)}", "device": "mobile"},
    }
    if rng.random() < 0.6:
        event["user_id"] = f"u{rng.randrange(100_000)}"
    else:
        event["visitor_id"] = f"v{rng.randrange(200_000)}"
    if kind == "impression":
        event["item_ids"] = [f"i{rng.randrange(ITEMS)}" for _ in range(5)]
        event["positions"] = list(range(5))
        event["rec_id"] = f"rec{n}"
        event["model_version"] = "als-3"
    else:
        event["item_id"] = f"i{int(rng.paretovariate(1.1)) % ITEMS}"
        if kind == "click" and rng.random() < 0.5:
            event["rec_id"] = f"rec{max(0, n - rng.randrange(1, 50))}"
    return event


def invocations(args: argparse.Namespace, start: datetime) -> Iterator[dict[str, Any]]:
    """Kinesis events, lane by lane and window by window, in time order."""
    rng = random.Random(7)
    lanes = args.shards * args.parallelization
    per_invocation = args.events_per_second * args.batch_window / lanes
    windows = int(args.hours * 3600 / args.batch_window)
    sequence = [0] * args.shards
    n = 0
    carry = 0.0
    for w in range(windows):
        opened = start + timedelta(seconds=w * args.batch_window)
        for lane in range(lanes):
            shard = lane % args.shards
            carry += per_invocation
            count, carry = int(carry), carry - int(carry)
            count = max(1, count)  # a lane with records is why an invocation happens
            records = []
            for _ in range(count):
                ts = opened + timedelta(seconds=rng.random() * args.batch_window)
                data = json.dumps(_event(rng, n, ts)).encode()
                n += 1
                sequence[shard] += 1
                seq = f"4959{shard:04d}{sequence[shard]:016d}"
                records.append(
                    {
                        "kinesis": {
                            "data": base64.b64encode(data).decode(),
                            "sequenceNumber": seq,
                            "partitionKey": f"p{lane}",
                            "kinesisSchemaVersion": "1.0",
                            "approximateArrivalTimestamp": ts.timestamp(),
                        },
                        "eventSource": "aws:kinesis",
                        "eventID": f"shardId-{shard:012d}:{seq}",
                        "eventName": "aws:kinesis:record",
                        "eventVersion": "1.0",
                    }
                )
            yield {"Records": records}


def ingest(lake: Lake, args: argparse.Namespace, start: datetime) -> dict[str, Any]:
    weblog = _load_handler()
    weblog.logger.setLevel("WARNING")
    weblog.set_processor(weblog.WeblogProcessor(Ingestor(lake, Settings())))
    rng = random.Random(3)
    calls = redelivered = 0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # EMF lines go to stdout, as in Lambda
        for event in invocations(args, start):
            again = rng.random() < args.redelivered
            for _ in range(2 if again else 1):
                response = weblog.lambda_handler(event, Context())
                assert response == {"batchItemFailures": []}, response
            calls += 1
            redelivered += again
    return {
        "invocations": calls,
        "redelivered": redelivered,
        "ingest_s": round(time.perf_counter() - t0, 1),
    }


def objects(lake: Lake, top: str) -> tuple[int, int]:
    found = [info.size for info in lake.store.list(top)]
    return len(found), sum(found)


def rows_digest(lake: Lake, lo: datetime, hi: datetime) -> tuple[int, str]:
    """A digest of the window's rows, independent of object layout and order."""
    columns = ["event_id", "timestamp", "event_type", "user_id", "visitor_id", "item_id"]
    table, _ = lake.read_events(lo, hi, columns=columns, dedupe=False)
    table = table.take(pc.sort_indices(table, [("event_id", "ascending")])).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return table.num_rows, hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def training_read(lake: Lake, lo: datetime, hi: datetime) -> tuple[float, Any]:
    t0 = time.perf_counter()
    data = dataset.from_lake(lake, lo, hi)
    elapsed = time.perf_counter() - t0
    matrix = data.matrix
    return elapsed, (data.events_read, matrix.nnz, round(float(matrix.sum()), 3))


def monitor_pass(lake: Lake, now: datetime) -> tuple[float, Any]:
    model = ModelInfo("als-3", trained_at=now - timedelta(hours=30))
    t0 = time.perf_counter()
    report = run_checks(lake, model, now=now)
    elapsed = time.perf_counter() - t0
    return elapsed, json.dumps(report.to_dict(), sort_keys=True, default=str)


def bytes_per_event(lake: Lake, keys: list[str], rows: int) -> dict[str, float]:
    """The objects' bytes per event as written, and rewritten by the earlier writer."""
    now_bytes = before = 0
    for key in keys:
        data = lake.store.get(key)
        now_bytes += len(data)
        table = conform(read_parquet(data)).cast(EVENT_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")  # the writer before this change
        before += len(sink.getvalue())
    return {"before": round(before / rows, 1), "after": round(now_bytes / rows, 1)}


def sample_rows(lake: Lake, keys: list[str]) -> int:
    return sum(pq.ParquetFile(io.BytesIO(lake.store.get(k))).metadata.num_rows for k in keys)


def run(args: argparse.Namespace, lake: Lake) -> dict[str, Any]:
    start = (datetime.now(UTC) - timedelta(hours=args.hours + 30)).replace(
        minute=0, second=0, microsecond=0
    )
    end = start + timedelta(hours=args.hours)
    out: dict[str, Any] = {"store": args.store, "hours": args.hours}
    out.update(ingest(lake, args, start))
    count, size = objects(lake, "events/")
    rows, digest = rows_digest(lake, start, end)
    out.update(objects_written=count, raw_bytes=size, events=rows)
    print(f"ingested {rows:,} events into {count:,} objects ({size / 2**20:.1f} MiB)")
    raw_sample = sorted(info.key for info in lake.store.list("events/"))[:: max(1, count // 500)]
    raw_bpe = bytes_per_event(lake, raw_sample, sample_rows(lake, raw_sample))

    now = end + timedelta(minutes=15)  # the monitor at the end of the data
    train_before, train_rows = training_read(lake, start, end)
    monitor_before, report_before = monitor_pass(lake, now)
    print(f"before: training read {train_before:.2f} s, monitor pass {monitor_before:.2f} s")

    t0 = time.perf_counter()
    results = compact(lake.store, now=now, rollup_after=None)
    out["compaction_s"] = round(time.perf_counter() - t0, 1)
    out["units_compacted"] = sum(r.outcome == "committed" for r in results)
    read_keys = lake.event_keys(start, end)
    out["objects_read_after"] = len(read_keys)
    print(f"compacted {out['units_compacted']} hours in {out['compaction_s']} s")

    train_after, train_rows_after = training_read(lake, start, end)
    monitor_after, report_after = monitor_pass(lake, now)
    print(f"after:  training read {train_after:.2f} s, monitor pass {monitor_after:.2f} s")
    rows_after, digest_after = rows_digest(lake, start, end)
    compacted_bpe = bytes_per_event(lake, read_keys, rows_after)
    out.update(
        training_read_before_s=round(train_before, 3),
        training_read_after_s=round(train_after, 3),
        training_ratio=round(train_before / train_after, 1),
        monitor_before_s=round(monitor_before, 3),
        monitor_after_s=round(monitor_after, 3),
        monitor_ratio=round(monitor_before / monitor_after, 1),
        identical_rows=digest == digest_after and rows == rows_after,
        identical_training_input=train_rows == train_rows_after,
        identical_monitor_report=report_before == report_after,
        raw_bytes_per_event=raw_bpe,
        compacted_bytes_per_event=compacted_bpe,
    )
    return out


@contextlib.contextmanager
def s3_lake() -> Iterator[Lake]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="recloop-bench")
        yield Lake.from_uri("s3://recloop-bench/lake", s3_client=client)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=18.0)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--parallelization", type=int, default=2)
    parser.add_argument("--batch-window", type=float, default=5.0)
    parser.add_argument("--events-per-second", type=float, default=20.0)
    parser.add_argument("--redelivered", type=float, default=0.01)
    parser.add_argument("--store", choices=("file", "s3"), default="file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recloop-bench-lake-") as tmp:
        if args.store == "s3":
            with s3_lake() as lake:
                out = run(args, lake)
        else:
            out = run(args, Lake.from_uri((Path(tmp) / "lake").as_uri()))
    print(json.dumps(out))
    return 0 if out["identical_rows"] and out["identical_monitor_report"] else 1


if __name__ == "__main__":
    sys.exit(main())
