"""Weblog ingest: decode records, apply business rules, validate, dedupe, write, account.

    ingestor = Ingestor(Lake.from_uri(uri), settings, history_sink=None)
    report = ingestor.ingest_records([(record_id, raw_bytes), ...], batch_id="...")
    report = ingestor.ingest_events(events, batch_id="import-...")   # importers, simulator
    report = ingestor.ingest_file("weblog.log")                      # `recloop ingest`
    report.to_dict()  # {received, written, filtered, quarantined, duplicates}

The unit counted is one event candidate (a JSON object, an NDJSON line, a Logstash event, an
access-log line, a KPL user record's content) or a record that cannot be decoded at all. Each
ends as exactly one of: written; duplicate (same event_id earlier in the batch, or the lake
object exists already: a redelivery); filtered, with a reason; quarantined, with a reason and
its raw payload (lake `quarantine/`); or failed (transient write error; its record id is in
`report.failed_ids` for a retry).

Filter reasons: static_asset, non_2xx, bot, not_get, not_content (no URL rule matched),
control_message (CloudWatch Logs).
Quarantine reasons: not_utf8, oversized, empty, malformed_gzip, malformed_aggregate,
malformed_json, unsupported_format (plain text that is no access-log line), unparsable_log
(a Logstash event with neither a log line nor grok fields), invalid_event (fails the Event
model), too_old (max_event_age_days), future_timestamp (max_clock_skew_seconds).
"""

from recloop.ingest.accesslog import AccessLog, parse_access_log
from recloop.ingest.decode import decode_record
from recloop.ingest.files import InputFileError
from recloop.ingest.ingestor import HistorySink, Ingestor, ObjectNamer, content_batch_id
from recloop.ingest.report import IngestReport
from recloop.ingest.rules import Rules, event_id_for_line

__all__ = [
    "AccessLog",
    "HistorySink",
    "IngestReport",
    "Ingestor",
    "InputFileError",
    "ObjectNamer",
    "Rules",
    "content_batch_id",
    "decode_record",
    "event_id_for_line",
    "parse_access_log",
]
