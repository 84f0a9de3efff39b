"""Weblog ingest: decode records, apply business rules, validate, dedupe, write, account.

ingestor = Ingestor(Lake.from_uri(uri))
report = ingestor.ingest_records([(record_id, raw_bytes), ...], batch_id="...")
report.to_dict()  # {received, written, filtered, quarantined, duplicates}
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
