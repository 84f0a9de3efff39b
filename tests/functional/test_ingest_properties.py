"""Property tests: every entry point takes arbitrary input, raises nothing, and accounts for it.

Each entry point is fed arbitrary bytes and arbitrary JSON shaped like events (extreme dates,
offsets and numbers, unicode, nesting). For each call: received = written + filtered +
quarantined + duplicates, nothing raises, and the lake holds what the report says.

RECLOOP_PROPERTY_EXAMPLES sets the examples per entry point (default 2000, what CI runs; set
it lower for a quick local run). Cost: ~10 ms of CPU per example (300 per entry point took
20 s of user+sys CPU on the shared 2-core machine), so ~100 s of CPU for the default, split
over CI's two pytest workers. deadline=None: a Parquet write's time varies with the load.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import string
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recloop.config import Settings
from recloop.ingest import Ingestor, IngestReport
from recloop.lake import Lake

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("RECLOOP_PROPERTY_EXAMPLES", "2000"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=False,
)
TESTS = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)
SETTINGS = Settings(max_record_bytes=16 * 1024)


def _load_handler() -> Any:
    name = "weblog_processor_handler"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, TESTS.parent / "lambdas" / "weblog_processor" / "handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ---- strategies -------------------------------------------------------------------------

# Extreme and ordinary instants, with offsets up to the +-24 h datetime allows.
offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timedelta(minutes=m))
instants = st.one_of(
    st.datetimes(
        min_value=NOW.replace(tzinfo=None) - timedelta(days=3), max_value=NOW.replace(tzinfo=None)
    ),
    st.datetimes(),  # year 1 to 9999
    st.sampled_from([datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1), datetime(1970, 1, 1)]),
)
iso_times = st.builds(
    lambda t, off, naive: t.isoformat() if naive else t.replace(tzinfo=_zone(off)).isoformat(),
    instants,
    offsets,
    st.booleans(),
)


def _zone(offset: timedelta) -> Any:
    from datetime import timezone

    return timezone(offset)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=4,
)
LONG_PAGES = ["/items/" + "é" * 3000, "/items/a?" + "q" * 2100, "/" * 2049]
ids = st.one_of(st.text(min_size=1, max_size=140), st.sampled_from(["a", "imp-x", " ", "é" * 130]))
event_types = st.sampled_from(
    ["view", "click", "impression", "like", "share", "purchase", "bogus", 5]
)
positions = st.lists(st.integers(min_value=-5, max_value=2**40), max_size=4)


@st.composite
def event_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed events with some field pushed to an extreme or wrong type."""
    event: dict[str, Any] = {
        "event_id": draw(ids),
        "event_type": draw(event_types),
        "timestamp": draw(st.one_of(iso_times, st.just(NOW.isoformat()), json_values)),
        draw(st.sampled_from(["user_id", "visitor_id"])): draw(ids),
    }
    if draw(st.booleans()):
        event["item_id"] = draw(ids)
    if draw(st.booleans()):
        event["item_ids"] = draw(st.lists(ids, max_size=4))
        event["positions"] = draw(positions)
    if draw(st.booleans()):
        event["context"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "page": st.one_of(st.text(max_size=30), st.sampled_from(LONG_PAGES)),
                    "referrer": json_values,
                    "device": st.text(max_size=80),
                },
            )
        )
    for key in draw(
        st.lists(
            st.sampled_from(["rec_id", "session_id", "source", "schema_version", "ip", "nested"]),
            max_size=3,
        )
    ):
        event[key] = draw(json_values)
    return event


months = st.sampled_from(["Jan", "Feb", "Dec", "Foo"])
access_lines = st.builds(
    lambda ip, d, mon, y, h, sign, off, path, status: (
        f'{ip} - - [{d:02d}/{mon}/{y:04d}:{h:02d}:00:00 {sign}{off:04d}] "GET {path} HTTP/1.1" '
        f'{status} 5 "-" "Mozilla/5.0"'
    ),
    st.sampled_from(["192.0.2.1", "2001:db8::1", "x"]),
    st.integers(0, 32),
    months,
    st.sampled_from([1, 1970, NOW.year, 9999]),
    st.integers(0, 25),
    st.sampled_from(["+", "-"]),
    st.integers(0, 9999),
    st.sampled_from(["/items/1", "/items/a?q=secret", "/app.js", "/"]),
    st.sampled_from([200, 404, 999]),
)
lines = st.one_of(
    event_dicts().map(lambda e: json.dumps(e, ensure_ascii=False)),
    event_dicts().map(
        lambda e: json.dumps({"@timestamp": e.get("timestamp"), "message": "x", **e})
    ),
    access_lines,
    st.text(max_size=200).map(lambda t: t.replace("\n", " ")),
)
records = st.one_of(
    st.binary(max_size=400),
    st.lists(lines, min_size=1, max_size=3).map(
        lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
)


def fresh_lake() -> Lake:
    return Lake.from_uri(Path(tempfile.mkdtemp(prefix="prop-lake-")).as_uri())


def assert_accounted(report: IngestReport, lake: Lake) -> None:
    assert report.failed == 0
    assert report.accounted == report.received
    quarantine = lake.read_quarantine()
    assert quarantine.num_rows == report.quarantined_total
    # the objects this call created hold exactly the events it counts as written (readers
    # dedupe ids per hour, so they are counted from the objects, not through read_events)
    rows = sum(
        pq.read_metadata(pa.BufferReader(lake.store.get(k))).num_rows for k in report.objects
    )
    assert rows == report.written
    for payload in quarantine.column("payload").to_pylist():
        assert len(payload) <= 4096
        assert b"192.0.2.1" not in payload and b"q=secret" not in payload


# ---- entry points ------------------------------------------------------------------------


@PROPERTY
@given(st.lists(records, max_size=4))
def test_kinesis_handler_accounts_for_arbitrary_records(payloads: list[bytes]) -> None:
    weblog = _load_handler()
    lake = fresh_lake()
    processor = weblog.WeblogProcessor(Ingestor(lake, SETTINGS))
    event = {
        "Records": [
            {
                "kinesis": {"sequenceNumber": f"{i:020d}", "data": base64.b64encode(p).decode()},
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{i:020d}",
            }
            for i, p in enumerate(payloads)
        ]
    }
    report = processor.ingest(event)
    assert_accounted(report, lake)


@PROPERTY
@given(
    st.lists(
        st.one_of(lines, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))), max_size=6
    )
)
def test_the_file_ingest_accounts_for_arbitrary_lines(text_lines: list[str]) -> None:
    lake = fresh_lake()
    folder = Path(tempfile.mkdtemp(prefix="prop-file-"))
    path = folder / "input.log"
    path.write_bytes("\n".join(text_lines).encode("utf-8", "surrogatepass"))
    report = Ingestor(lake, SETTINGS).ingest_file(path, chunk_size=3)
    assert_accounted(report, lake)


@PROPERTY
@given(st.lists(st.one_of(event_dicts(), json_values), max_size=5))
def test_ingest_events_accounts_for_arbitrary_objects(objects: list[Any]) -> None:
    # the importers' and the simulator's path: objects, not bytes
    lake = fresh_lake()
    report = Ingestor(lake, SETTINGS).ingest_events(objects, "prop", chunk_size=3)
    assert_accounted(report, lake)


csv_cells = st.one_of(
    st.text(alphabet=string.printable, max_size=12),
    iso_times,
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["inf", "nan", "-1e10", "9999999999", "view", "click", "impression"]),
)


@PROPERTY
@given(st.lists(st.lists(csv_cells, min_size=0, max_size=5), max_size=6))
def test_the_csv_importer_accounts_for_arbitrary_rows(rows: list[list[str]]) -> None:
    import csv
    import io

    from recloop.importers.interactions import import_interactions

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["user_id", "item_id", "timestamp", "event_type"])
    writer.writerows(rows)
    folder = Path(tempfile.mkdtemp(prefix="prop-csv-"))
    path = folder / "interactions.csv"
    path.write_text(buffer.getvalue())
    lake = fresh_lake()
    result = import_interactions(path, lake, SETTINGS, batch_size=4)
    assert_accounted(result.report, lake)


api_bodies = st.one_of(
    st.lists(event_dicts(), min_size=1, max_size=3).map(lambda es: {"events": es}),
    json_values,
)


def test_post_events_answers_202_or_422_and_the_sink_delivers_what_it_accepted(
    tmp_path: Path,
) -> None:
    # One test, not two ordered ones: the sink's accounting needs every request the property
    # made, and pytest-xdist may run two tests of a module on different workers.
    from fastapi.testclient import TestClient

    from recloop.serving.app import create_app
    from recloop.serving.testing import tiny_world, world_settings

    world = tiny_world(tmp_path / "world", family="popularity")
    lake_uri = (tmp_path / "api-lake").as_uri()
    accepted: list[int] = []
    with TestClient(create_app(world_settings(world, lake_uri=lake_uri))) as client:

        @PROPERTY
        @given(api_bodies)
        def post(body: Any) -> None:
            response = client.post(
                "/events", content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert response.status_code in (202, 422), response.text
            if response.status_code == 202:
                assert response.json() == {"accepted": len(body["events"])}
                accepted.append(len(body["events"]))

        post()
        sink = client.app.state.runtime.sink
        assert sink.flush(60.0)
        assert sink.dropped == 0
        assert sink.delivered == sum(accepted)
    if EXAMPLES >= 200:  # else the strategy no longer makes valid events: a vacuous check
        assert accepted, "POST /events accepted no generated request"
    if accepted:
        lake = Lake.from_uri(lake_uri)
        assert lake.read_events()[0].num_rows + lake.read_quarantine().num_rows > 0
