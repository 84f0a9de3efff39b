"""weblog_processor on moto S3: real Kinesis event shapes, redelivery, fault injection, fuzzing.

The handler runs unchanged: real boto3 calls against moto, real Parquet, real Powertools
BatchProcessor and EMF metrics (captured from stdout).
"""

from __future__ import annotations

import base64
import gzip
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.config import Settings
from recloop.ingest import Ingestor
from recloop.ingest.redact import MAX_PAYLOAD_BYTES, redact
from recloop.lake import Lake

HANDLER = Path(__file__).resolve().parents[2] / "lambdas" / "weblog_processor" / "handler.py"
# A module name of its own: every Lambda's file is called handler.py
_spec = importlib.util.spec_from_file_location("weblog_processor_handler", HANDLER)
assert _spec is not None and _spec.loader is not None
weblog = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = weblog
_spec.loader.exec_module(weblog)

SHARD = "shardId-000000000006"
NOW = datetime.now(UTC)
BASE = (NOW - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)


class Context:
    """The attributes Powertools' Logger reads from a Lambda context."""

    function_name = "weblog_processor"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:weblog_processor"
    memory_limit_in_mb = 1024
    aws_request_id = "req-1"
    log_group_name = "/aws/lambda/weblog_processor"
    log_stream_name = "stream"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def seq(n: int) -> str:
    return f"4959033827149025660855969253836157109592157598913{n:07d}"


def kinesis_event(payloads: list[bytes], start: int = 0) -> dict[str, Any]:
    """A Kinesis Data Streams event in the shape Lambda delivers (see ../shared/aws-events)."""
    records = []
    for i, payload in enumerate(payloads, start=start):
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": str(i % 4),
                    "sequenceNumber": seq(i),
                    "data": base64.b64encode(payload).decode(),
                    "approximateArrivalTimestamp": NOW.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{seq(i)}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/weblogs",
            }
        )
    return {"Records": records}


def tracker_events(record: int, hour: int, n: int = 3) -> bytes:
    """NDJSON: `n` tracker events of one record, all in hour BASE + `hour`."""
    lines = [
        json.dumps(
            {
                "event_id": f"r{record}-e{k}",
                "event_type": "click" if k % 2 else "view",
                "timestamp": (BASE + timedelta(hours=hour, minutes=k)).isoformat(),
                "user_id": f"u{record % 7}",
                "item_id": f"i{(record + k) % 11}",
                "context": {"page": f"/items/i{k}", "device": "mobile"},
            }
        )
        for k in range(n)
    ]
    return "\n".join(lines).encode()


@pytest.fixture
def s3_lake(s3_bucket: tuple[Any, str]) -> tuple[Any, Lake]:
    client, bucket = s3_bucket
    return client, Lake.from_uri(f"s3://{bucket}/lake", s3_client=client)


@pytest.fixture
def invoke(s3_lake: tuple[Any, Lake]) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Call the Lambda entry point with a processor on the moto lake."""
    _, lake = s3_lake
    weblog.set_processor(weblog.WeblogProcessor(Ingestor(lake, Settings())))

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return weblog.handler(event, Context())  # type: ignore[no-any-return]

    yield call
    weblog.set_processor(None)


def failures(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def lake_keys(client: Any, bucket: str = "recloop-test-lake") -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix="lake/").get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listed}


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "kinesisStreamEvent.json",
        "kinesisStreamEventOneRecord.json",
        "kinesisStreamCloudWatchLogsEvent.json",
    ],
)
def test_shared_kinesis_events_are_quarantined_not_crashed_on(
    name: str, aws_event: Callable[[str], dict[str, Any]], invoke: Any, s3_lake: Any
) -> None:
    event = aws_event(name)
    response = invoke(event)
    assert failures(response) == []
    _, lake = s3_lake
    quarantine = lake.read_quarantine()
    assert quarantine.num_rows >= len(event["Records"])
    assert set(quarantine.column("reason").to_pylist()) <= {"unsupported_format", "unparsable_log"}
    assert all(payload for payload in quarantine.column("payload").to_pylist())
    assert lake.read_events()[0].num_rows == 0


# ---- accounting ---------------------------------------------------------------------------

LOG_TIME = (BASE + timedelta(hours=2)).strftime("%d/%b/%Y:%H:%M:%S +0000")
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def access_line(i: int, path: str = "/items/{i}", status: int = 200, agent: str = BROWSER) -> str:
    return (
        f'198.51.100.{i % 250} - - [{LOG_TIME}] "GET {path.format(i=i)} HTTP/1.1" {status} 321 '
        f'"https://example.org/" "{agent}"'
    )


def mixed_records(n: int) -> tuple[list[bytes], dict[str, Any]]:
    """`n` records of every kind the issue lists, and the counts they must produce."""
    expect: dict[str, Any] = {"written": 0, "filtered": {}, "quarantined": {}, "duplicates": 0}

    def bump(group: str, reason: str) -> None:
        expect[group][reason] = expect[group].get(reason, 0) + 1

    records: list[bytes] = []
    for i in range(n):
        kind = i % 14
        ts = (BASE + timedelta(minutes=i % 300)).isoformat()
        valid = {
            "event_id": f"m{i}",
            "event_type": "view",
            "timestamp": ts,
            "visitor_id": f"v{i % 97}",
            "item_id": f"i{i % 31}",
        }
        if kind == 0:
            records.append(json.dumps(valid).encode())
            expect["written"] += 1
        elif kind == 1:  # several events in one record
            lines = [json.dumps({**valid, "event_id": f"m{i}-{k}"}) for k in range(3)]
            records.append("\n".join(lines).encode())
            expect["written"] += 3
        elif kind == 2:
            records.append(b'{"event_id": "m%d", "event_type": "view", ' % i)
            bump("quarantined", "malformed_json")
        elif kind == 3:  # wrong types
            records.append(json.dumps({**valid, "event_type": 5, "timestamp": "soon"}).encode())
            bump("quarantined", "invalid_event")
        elif kind == 4:  # missing fields
            records.append(json.dumps({"event_id": f"m{i}", "event_type": "click"}).encode())
            bump("quarantined", "invalid_event")
        elif kind == 5:
            records.append(json.dumps({**valid, "padding": "x" * 5000}).encode())
            bump("quarantined", "oversized")
        elif kind == 6:
            records.append(b"\xff\xfe\xfa not utf-8 " + str(i).encode())
            bump("quarantined", "not_utf8")
        elif kind == 7:  # gzip-compressed NDJSON
            lines = [json.dumps({**valid, "event_id": f"m{i}-z{k}"}) for k in range(2)]
            records.append(gzip.compress("\n".join(lines).encode()))
            expect["written"] += 2
        elif kind == 8:
            records.append(access_line(i).encode())
            expect["written"] += 1
        elif kind == 9:
            records.append(
                access_line(i, agent="Googlebot/2.1 (+http://www.google.com/bot.html)").encode()
            )
            bump("filtered", "bot")
        elif kind == 10:
            records.append(access_line(i, path="/static/app-{i}.css").encode())
            bump("filtered", "static_asset")
        elif kind == 11:
            records.append(access_line(i, status=404 if i % 2 else 503).encode())
            bump("filtered", "non_2xx")
        elif kind == 12:  # the same event as record i - 12 (kind 0): a duplicate
            records.append(json.dumps({**valid, "event_id": f"m{i - 12}"}).encode())
            expect["duplicates"] += 1
        else:  # a Logstash event around a combined-log line
            logstash = {
                "@timestamp": ts,
                "message": access_line(i, path="/articles/a{i}"),
                "host": {"name": "web-1"},
            }
            records.append(json.dumps(logstash).encode())
            expect["written"] += 1
    expect["received"] = (
        expect["written"]
        + sum(expect["filtered"].values())
        + sum(expect["quarantined"].values())
        + expect["duplicates"]
    )
    return records, expect


def test_ten_thousand_mixed_records_are_each_accounted_for_once(s3_lake: Any) -> None:
    _client, lake = s3_lake
    processor = weblog.WeblogProcessor(Ingestor(lake, Settings(max_record_bytes=4096)))
    records, expect = mixed_records(10_000)
    event = kinesis_event(records)
    report = processor.ingest(event)
    summary = report.to_dict()
    assert summary == {k: expect[k] for k in summary}
    assert (
        report.written + report.filtered_total + report.quarantined_total + report.duplicates
        == report.received
    )

    events, _ = lake.read_events(dedupe=False)
    assert events.num_rows == expect["written"]
    assert len(events.column("event_id").unique()) == events.num_rows
    quarantine = lake.read_quarantine()
    assert quarantine.num_rows == sum(expect["quarantined"].values())
    by_source = {row["source_id"]: row for row in quarantine.to_pylist()}
    payloads = {r["eventID"]: base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]}
    for source_id, row in by_source.items():
        assert row["reason"] in expect["quarantined"]
        # the record's prefix, with no IP address or query string left in it
        assert row["payload"] == redact(payloads[source_id])
        assert len(row["payload"]) <= MAX_PAYLOAD_BYTES
    # no raw IP reaches the lake: access-log views carry a keyed visitor hash instead
    assert not any("198.51.100." in (v or "") for v in events.column("visitor_id").to_pylist())


# ---- redelivery, partial failures --------------------------------------------------------


def test_redelivering_a_batch_three_times_leaves_the_lake_unchanged(
    invoke: Any, s3_lake: Any
) -> None:
    client, lake = s3_lake
    payloads = [tracker_events(i, hour=i % 3) for i in range(30)]
    payloads += [b"not an event", access_line(7).encode()]
    event = kinesis_event(payloads)
    assert failures(invoke(event)) == []
    before = lake_keys(client)
    assert any("/quarantine/" in key for key in before)
    rows = lake.read_events(dedupe=False)[0].num_rows
    assert rows == 91
    for _ in range(2):
        assert failures(invoke(event)) == []
        assert lake_keys(client) == before
    assert lake.read_events(dedupe=False)[0].num_rows == rows


def test_object_names_come_from_shard_and_sequence_numbers(invoke: Any, s3_lake: Any) -> None:
    client, _ = s3_lake
    invoke(kinesis_event([tracker_events(i, hour=0) for i in range(5)], start=40))
    keys = [k for k in lake_keys(client) if "/events/" in k]
    assert keys == [
        f"lake/events/dt={BASE:%Y-%m-%d}/hour={BASE:%H}/{SHARD}-{seq(40)}-{seq(44)}.parquet"
    ]


class FailPuts:
    """A botocore before-call hook answering PutObject for matching keys with an S3 error.

    The error goes through botocore's normal error path (ClientError with the S3 code and HTTP
    status), exactly as a throttled or failing S3 answers; other calls reach moto unchanged.
    """

    def __init__(self, client: Any, match: str, code: str, status: int, times: int = 1) -> None:
        self.match, self.code, self.status, self.left = match, code, status, times
        self.failed: list[str] = []
        client.meta.events.register("before-call.s3.PutObject", self)

    def __call__(
        self, params: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        path = params["context"]["input_params"]["Key"]
        if self.left <= 0 or self.match not in path:
            return None
        self.left -= 1
        self.failed.append(path)
        http = AWSResponse(params["url"], self.status, {}, None)
        body = {
            "Error": {"Code": self.code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        return http, body


def events_keys(client: Any) -> set[str]:
    return {k for k in lake_keys(client) if "/events/" in k}


@pytest.mark.parametrize(("code", "status"), [("SlowDown", 503), ("InternalError", 500)])
def test_a_failed_write_redelivers_the_whole_batch_under_the_same_names(
    code: str, status: int, invoke: Any, s3_lake: Any, s3_bucket: tuple[Any, str]
) -> None:
    client, lake = s3_lake
    # records interleave hours, as Logstash batches do around an hour boundary: regrouping
    # a redelivered suffix would put its later records under new object names
    hour_of = {i: (i // 10 + i % 2) % 3 for i in range(30)}
    event = kinesis_event([tracker_events(i, hour=hour_of[i]) for i in range(30)])
    failing_hour = BASE + timedelta(hours=1)
    fault = FailPuts(client, f"hour={failing_hour:%H}/", code, status)

    response = invoke(event)

    assert len(fault.failed) == 1
    # every record: Lambda checkpoints at the lowest one and redelivers the batch from it
    assert failures(response) == [seq(i) for i in range(30)]
    lowest = min(failures(response))
    redelivery = {
        "Records": [r for r in event["Records"] if r["kinesis"]["sequenceNumber"] >= lowest]
    }
    assert failures(invoke(redelivery)) == []

    everything = lake.read_events(dedupe=False)[0]
    ids = everything.column("event_id").to_pylist()
    assert len(ids) == len(set(ids)) == 90  # every event once, none twice
    # the names are those an undisturbed delivery writes (one object per hour)
    assert len(events_keys(client)) == 3
    clean = s3_bucket[0]
    clean.create_bucket(Bucket="recloop-clean-lake")
    undisturbed = weblog.WeblogProcessor(
        Ingestor(Lake.from_uri("s3://recloop-clean-lake/lake", s3_client=clean), Settings())
    )
    assert failures(undisturbed.handle(event, Context())) == []
    assert events_keys(client) == events_keys_of(clean, "recloop-clean-lake")


def events_keys_of(client: Any, bucket: str) -> set[str]:
    return {k for k in lake_keys(client, bucket) if "/events/" in k}


def test_a_failed_quarantine_write_redelivers_the_batch(invoke: Any, s3_lake: Any) -> None:
    client, lake = s3_lake
    event = kinesis_event([tracker_events(0, 0), b"garbage", tracker_events(2, 0), b"\xff"])
    FailPuts(client, "/quarantine/", "SlowDown", 503)
    assert failures(invoke(event)) == [seq(i) for i in range(4)]
    assert lake.read_events()[0].num_rows == 6
    assert failures(invoke(event)) == []
    assert lake.read_events(dedupe=False)[0].num_rows == 6
    assert sorted(lake.read_quarantine().column("payload").to_pylist()) == [b"garbage", b"\xff"]


def test_a_total_write_failure_reports_every_record_without_a_function_error(
    invoke: Any, s3_lake: Any
) -> None:
    client, lake = s3_lake
    event = kinesis_event([tracker_events(i, hour=0) for i in range(4)])
    FailPuts(client, "/events/", "SlowDown", 503)
    # a function error would let BisectBatchOnFunctionError split (and rename) the batch
    assert failures(invoke(event)) == [seq(i) for i in range(4)]
    assert lake.read_events()[0].num_rows == 0
    assert failures(invoke(event)) == []
    assert lake.read_events()[0].num_rows == 12


def test_a_permanent_lake_error_fails_the_invocation(invoke: Any, s3_lake: Any) -> None:
    client, _ = s3_lake
    from recloop.errors import LakeError, TransientStoreError

    FailPuts(client, "/events/", "AccessDenied", 403)
    with pytest.raises(LakeError) as raised:
        invoke(kinesis_event([tracker_events(0, 0)]))
    assert not isinstance(raised.value, TransientStoreError)


# ---- formats, metrics, fuzzing -----------------------------------------------------------


def test_gzip_ndjson_and_logstash_records_land_as_events(invoke: Any, s3_lake: Any) -> None:
    _, lake = s3_lake
    logstash_grok = {  # Logstash's grok COMBINEDAPACHELOG fields, message not a log line
        "@timestamp": (BASE + timedelta(minutes=5)).isoformat(),
        "message": "(parsed upstream)",
        "clientip": "192.0.2.1",
        "verb": "GET",
        "request": "/movies/m42",
        "response": "200",
        "agent": f'"{BROWSER}"',
        "referrer": '"-"',
    }
    event = kinesis_event(
        [
            gzip.compress(tracker_events(1, 0)),
            tracker_events(2, 1, n=4),
            json.dumps(logstash_grok).encode(),
            gzip.compress(access_line(3).encode()),
        ]
    )
    assert failures(invoke(event)) == []
    table = lake.read_events()[0]
    assert table.num_rows == 3 + 4 + 1 + 1
    weblog_items = {row["item_id"] for row in table.to_pylist() if row["source"] == "weblog"}
    assert weblog_items == {"m42", "3"}


def test_metrics_are_emitted_as_emf_with_reasons(invoke: Any, capsys: Any) -> None:
    capsys.readouterr()
    event = kinesis_event([tracker_events(1, 0), b"junk", access_line(1, status=500).encode()])
    invoke(event)
    blobs = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "_aws" in line
    ]
    metrics: dict[tuple[str, ...], float] = {}
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "recloop"
            dims = tuple(f"{d}={blob[d]}" for dset in directive["Dimensions"] for d in dset)
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                total = sum(value) if isinstance(value, list) else value
                metrics[(metric["Name"], *dims)] = total
    service = "service=weblog_processor"
    assert metrics[("EventsReceived", service)] == 5
    assert metrics[("EventsWritten", service)] == 3
    assert metrics[("EventsFiltered", service)] == 1
    assert metrics[("EventsQuarantined", service)] == 1
    assert metrics[("EventsQuarantined", service, "reason=unsupported_format")] == 1
    assert metrics[("EventsFailed", service)] == 0 and metrics[("HistoryErrors", service)] == 0
    assert metrics[("EventsFiltered", service, "reason=non_2xx")] == 1
    assert 0 < metrics[("IngestLagSeconds", service)] < 7 * 3600


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(max_size=300) | st.text(max_size=200).map(str.encode), max_size=8))
def test_arbitrary_bytes_never_raise_out_of_the_handler(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes]
) -> None:
    lake = Lake.from_uri(tmp_path_factory.mktemp("fuzz").as_uri())
    processor = weblog.WeblogProcessor(Ingestor(lake, Settings()))
    response = processor.handle(kinesis_event(payloads), Context())
    assert response == {"batchItemFailures": []}
    report = processor.ingest(kinesis_event(payloads))
    assert report.accounted == report.received >= 0
    assert len(lake.read_quarantine()) == report.quarantined_total


def test_gzip_bombs_are_quarantined_as_oversized(invoke: Any, s3_lake: Any) -> None:
    _, lake = s3_lake
    bomb = gzip.compress(b"{" + b" " * 5_000_000 + b"}")
    assert len(bomb) < 10_000
    assert failures(invoke(kinesis_event([bomb]))) == []
    quarantine = lake.read_quarantine().to_pylist()
    # a bounded prefix of the record is kept, never the inflated bytes
    assert [(q["reason"], q["payload"]) for q in quarantine] == [("oversized", redact(bomb))]


def test_kpl_aggregated_records_from_logstash_are_unpacked(invoke: Any, s3_lake: Any) -> None:
    pytest.importorskip("google.protobuf")
    path = Path(__file__).resolve().parents[1] / "unit" / "test_ingest_kpl.py"
    spec = importlib.util.spec_from_file_location("kpl_builder", path)
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)

    logstash = [
        json.dumps({"@timestamp": NOW.isoformat(), "message": access_line(i)}).encode()
        for i in range(5)
    ]
    event = kinesis_event([builder.aggregate(logstash), builder.aggregate([b"junk"])])
    assert failures(invoke(event)) == []
    _, lake = s3_lake
    assert lake.read_events()[0].num_rows == 5
    quarantine = lake.read_quarantine().to_pylist()
    assert [(q["source_id"], q["payload"]) for q in quarantine] == [(f"{SHARD}:{seq(1)}", b"junk")]


@pytest.mark.shared
@pytest.mark.parametrize(
    "name", ["apiGatewayProxyEvent.json", "eventBridgeEvent.json", "kinesisFirehosePutEvent.json"]
)
def test_events_from_a_miswired_trigger_fail_loudly(
    name: str, aws_event: Callable[[str], dict[str, Any]], invoke: Any, s3_lake: Any
) -> None:
    from recloop.errors import ConfigError

    with pytest.raises(ConfigError, match="Kinesis Data Streams"):
        invoke(aws_event(name))
    client, _ = s3_lake
    assert lake_keys(client) == {}


def test_a_cold_start_builds_the_processor_from_the_environment(
    s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, bucket = s3_bucket
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv("RECLOOP_URL_RULES", '["^/p/(?P<item>[a-z0-9]+)$"]')
    weblog.set_processor(None)
    try:
        lines = [access_line(1, path="/p/abc"), access_line(2, path="/items/x")]
        event = kinesis_event([line.encode() for line in lines])
        assert failures(weblog.handler(event, Context())) == []
        processor = weblog._processor
        assert processor is not None
        assert weblog.handler(event, Context()) == {"batchItemFailures": []}
        assert weblog._processor is processor  # created once per container
    finally:
        weblog.set_processor(None)
    events = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client).read_events()[0]
    assert events.column("item_id").to_pylist() == ["abc"]  # the env's URL rules applied


def test_events_written_by_the_lambda_reach_the_feature_store_history(
    s3_bucket: tuple[Any, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from recloop.serving.features import features_from_uri

    client, bucket = s3_bucket
    features_uri = "sqlite:///" + str(tmp_path / "features.db")
    monkeypatch.setenv("RECLOOP_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv("RECLOOP_FEATURES_URI", features_uri)
    weblog.set_processor(None)
    try:
        event = kinesis_event([access_line(1, path="/items/abc").encode()])
        assert failures(weblog.handler(event, Context())) == []
    finally:
        weblog.set_processor(None)
    events = Lake.from_uri(f"s3://{bucket}/lake", s3_client=client).read_events()[0]
    visitor = events.column("visitor_id")[0].as_py()
    store = features_from_uri(features_uri, timeout_ms=5_000)
    try:
        assert [h.item_id for h in store.recent_history(visitor)] == ["abc"]
    finally:
        store.close()
