"""One bad unit never costs the others: each finding of issue 14, at every entry point.

Each input below once raised out of the Ingestor (a traceback from `recloop ingest` with nothing
written, a failed Lambda invocation, a 500 from POST /events); each test fails if it comes back.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.config import Settings
from recloop.ingest import Ingestor
from recloop.lake import Lake

TESTS = Path(__file__).resolve().parents[1]
RECENT = datetime.now(UTC) - timedelta(hours=2)
LOG_TIME = RECENT.strftime("%d/%b/%Y:%H:%M:%S")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


weblog = _load("weblog_processor_handler", TESTS.parent / "lambdas/weblog_processor/handler.py")


def good_lines(n: int = 200) -> list[str]:
    """`n` valid lines: tracker events, access-log lines and Logstash events in turn."""
    lines = []
    for i in range(n):
        if i % 3 == 0:
            event = {
                "event_id": f"g{i}",
                "event_type": "view",
                "timestamp": RECENT.isoformat(),
                "user_id": f"u{i % 9}",
                "item_id": f"i{i % 13}",
            }
            lines.append(json.dumps(event))
        else:
            line = (
                f'198.51.100.{i % 250} - - [{LOG_TIME} +0000] "GET /items/{i} HTTP/1.1" 200 5 '
                f'"-" "{BROWSER}"'
            )
            lines.append(line if i % 3 == 1 else json.dumps({"@timestamp": "x", "message": line}))
    return lines


# Each once raised out of the ingestor (OverflowError, ArrowInvalid, ValueError).
BAD = {
    "utc_overflow": json.dumps(
        {
            "event_id": "bad-ts",
            "event_type": "view",
            "timestamp": "9999-12-31T23:59:59-01:00",
            "user_id": "u1",
            "item_id": "i1",
        }
    ),
    "position_beyond_int32": json.dumps(
        {
            "event_id": "bad-pos",
            "event_type": "impression",
            "timestamp": RECENT.isoformat(),
            "user_id": "u1",
            "item_ids": ["i1"],
            "positions": [2**31],
        }
    ),
    "offset_beyond_24h": (
        f'198.51.100.7 - - [{LOG_TIME} +9900] "GET /items/7 HTTP/1.1" 200 5 "-" "{BROWSER}"'
    ),
    "logstash_utc_overflow": json.dumps(
        {
            "@timestamp": "9999-12-31T23:59:59-01:00",
            "clientip": "198.51.100.9",
            "request": "/items/9",
            "response": "200",
            "agent": BROWSER,
        }
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_cli_writes_every_good_line_around_one_bad_one_and_exits_0(
    bad: str, tmp_path: Path, lake_uri: str
) -> None:
    lines = good_lines()
    path = tmp_path / "mixed.log"
    path.write_text("\n".join([*lines[:100], BAD[bad], *lines[100:]]) + "\n")
    result = CliRunner().invoke(
        app, ["ingest", str(path), "--json", "--lake-uri", lake_uri, "--no-features"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["received"] == 201
    assert summary["written"] == 200
    assert sum(summary["quarantined"].values()) == 1
    events = Lake.from_uri(lake_uri).read_events()[0]
    assert events.num_rows == 200
    assert Lake.from_uri(lake_uri).read_quarantine().num_rows == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_SEQ0 = 49590338271490256608559692538361571095921575989130000


def _kinesis_event(payloads: list[bytes]) -> dict[str, Any]:
    shard = "shardId-000000000001"
    return {
        "Records": [
            {
                "kinesis": {
                    "sequenceNumber": str(_SEQ0 + i),
                    "data": base64.b64encode(payload).decode(),
                    "partitionKey": "pk",
                },
                "eventSource": "aws:kinesis",
                "eventID": f"{shard}:{_SEQ0 + i}",
            }
            for i, payload in enumerate(payloads)
        ]
    }


class _Context:
    function_name = "weblog_processor"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:weblog_processor"
    memory_limit_in_mb = 1024
    aws_request_id = "req-iso"
    log_group_name = "/aws/lambda/weblog_processor"
    log_stream_name = "stream"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.mark.parametrize("bad", sorted(BAD))
def test_a_logstash_aggregate_of_200_good_and_1_bad_line_is_no_invocation_failure(
    bad: str, s3_bucket: tuple[Any, str]
) -> None:
    pytest.importorskip("google.protobuf")
    kpl = _load("kpl_builder", TESTS / "unit" / "test_ingest_kpl.py")
    client, bucket = s3_bucket
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    lines = good_lines()
    aggregate = kpl.aggregate([line.encode() for line in [*lines[:50], BAD[bad], *lines[50:]]])
    processor = weblog.WeblogProcessor(Ingestor(lake, Settings()))
    assert processor.handle(_kinesis_event([aggregate]), _Context()) == {"batchItemFailures": []}
    assert lake.read_events()[0].num_rows == 200
    assert lake.read_quarantine().num_rows == 1


def test_the_lambda_writes_the_lake_while_documentdb_is_down_at_cold_start(
    s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # No DocumentDB can run here: a mongodb:// URI on a closed loopback port is an outage as
    # pymongo sees it (connection refused until the server selection timeout).
    client, bucket = s3_bucket
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv(
        "RECLOOP_FEATURES_URI", f"mongodb://127.0.0.1:{_free_port()}/?directConnection=true"
    )
    monkeypatch.setattr(weblog, "_HISTORY_TIMEOUT_MS", 200)
    monkeypatch.setattr(weblog, "_processor", None)
    event = _kinesis_event([line.encode() for line in good_lines(30)])
    capsys.readouterr()
    assert weblog.handler(event, _Context()) == {"batchItemFailures": []}
    lake = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)
    assert lake.read_events()[0].num_rows == 30
    emf = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert [blob["HistoryErrors"] for blob in emf if "HistoryErrors" in blob] == [[1.0]]
    # the next batch does not wait on the outage again (no call within the back-off)
    sink = weblog._processor.ingestor.history_sink
    try:
        second = _kinesis_event([line.encode() for line in good_lines(31)[30:]])
        assert weblog.handler(second, _Context()) == {"batchItemFailures": []}
        assert lake.read_events()[0].num_rows == 31
        assert sink.failures == 1  # no second connection attempt (each costs a timeout)
    finally:
        sink.close()
