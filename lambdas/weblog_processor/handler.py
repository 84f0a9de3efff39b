"""weblog_processor: Kinesis Data Streams (Logstash's kinesis output) -> recloop's data lake.

The handler only adapts the Kinesis event to recloop.ingest. The whole batch goes through the
Ingestor once (validating record by record would halve the throughput): one Parquet object per
hour partition, named from the shard id and the first and last sequence numbers of the records
it holds, written with If-None-Match so a redelivered batch writes nothing twice.

Every record is isolated: whatever one record holds ends written, filtered, quarantined or a
duplicate, so one bad line never fails the invocation. When a lake write fails transiently,
every record of the batch is reported in batchItemFailures (ReportBatchItemFailures): Lambda
checkpoints at the lowest reported sequence number and redelivers the batch from its first
record, so the redelivery groups the records exactly as before and writes the same object
names (the written ones are found present, the failed ones are written). Reporting only the
failed records would redeliver a suffix whose later records regroup under new names: readers
that do not dedupe (Glue/Athena, the drift detector) would count them twice. No function error
is raised for a transient failure, so BisectBatchOnFunctionError never splits the batch either.
Permanent lake errors propagate and fail the invocation.

The feature store (history sink) is built on the first events and best-effort: DocumentDB
being down at cold start costs HistoryErrors, never a lake write.

Environment: RECLOOP_LAKE_URI (s3://bucket/prefix), RECLOOP_* business-logic settings,
POWERTOOLS_METRICS_NAMESPACE (default "recloop"), POWERTOOLS_SERVICE_NAME.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.ingest import Ingestor, IngestReport
from recloop.ingest.history import LazyHistorySink
from recloop.lake import Lake

SERVICE = "weblog_processor"
# A history append is one batch write per invocation, not a request: a batch-sized deadline.
_HISTORY_TIMEOUT_MS = 5_000
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))


def kinesis_object_name(event_ids: Sequence[str]) -> str:
    """'shardId-…:first' … 'shardId-…:last' -> 'shardId-…-<first seq>-<last seq>'."""
    first, last = event_ids[0], event_ids[-1]
    shard, _, first_seq = first.partition(":")
    _, _, last_seq = last.partition(":")
    if not first_seq or not last_seq:  # not Kinesis-shaped ids: still deterministic
        return "batch-" + hashlib.sha256("\n".join(event_ids).encode()).hexdigest()[:32]
    return f"{shard}-{first_seq}-{last_seq}"


def _record_bytes(record: dict[str, Any]) -> bytes:
    data = record.get("kinesis", {}).get("data", "")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        # Kinesis always base64-encodes; anything else is kept as-is and quarantined
        return str(data).encode("utf-8", "replace")


def _history_sink(settings: Settings) -> LazyHistorySink | None:
    """DocumentDB as the real-time history sink when RECLOOP_FEATURES_URI names it, else none.

    Only an explicit setting counts (from the environment, or however Settings resolves it):
    the default (SQLite under the working directory) is a laptop's store, and a Lambda's file
    system is read-only there. The store is built on the first events, not here: a DocumentDB
    outage at cold start must not fail the lake writes.
    """
    if "features_uri" not in settings.model_fields_set:
        return None
    uri = settings.features_uri

    def build() -> Any:
        from recloop.serving.features import features_from_uri

        return features_from_uri(uri, timeout_ms=_HISTORY_TIMEOUT_MS)

    return LazyHistorySink(build)


class WeblogProcessor:
    """One container's processor: Ingestor, Metrics and BatchProcessor, created once."""

    def __init__(self, ingestor: Ingestor, metrics: Metrics | None = None) -> None:
        self.ingestor = ingestor
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "recloop")
        self.metrics = metrics or Metrics(namespace=namespace, service=SERVICE)

    @classmethod
    def from_env(cls, s3_client: Any = None) -> WeblogProcessor:
        """Settings from RECLOOP_* variables; the S3 client from the Lambda's role."""
        settings = Settings()
        if s3_client is None and settings.lake_uri.startswith("s3://"):
            import boto3

            s3_client = boto3.client("s3")
        lake = Lake.from_uri(settings.lake_uri, s3_client=s3_client)
        return cls(Ingestor(lake, settings, history_sink=_history_sink(settings)))

    def ingest(self, event: dict[str, Any]) -> IngestReport:
        """The whole batch through the Ingestor once; objects named from the records' ids."""
        records = event.get("Records")
        if not isinstance(records, list) or not all(
            isinstance(r, dict) and r.get("eventSource") == "aws:kinesis" for r in records
        ):
            # a miswired trigger must fail loudly, not be "processed" into the quarantine
            raise ConfigError("weblog_processor expects a Kinesis Data Streams event")
        return self.ingestor.ingest_records(
            ((r.get("eventID", ""), _record_bytes(r)) for r in records),
            batch_id="kinesis",
            object_name=kinesis_object_name,
        )

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Ingest, publish metrics, and report the records to retry as batchItemFailures."""
        report = self.ingest(event)
        failed = len(set(report.failed_ids))
        logger.info("batch ingested", extra={"report": report.to_dict(), "failed": failed})
        try:
            self._publish(report)
        finally:
            self.metrics.flush_metrics()
        if not failed:
            return {"batchItemFailures": []}
        # The whole batch again, from its first record: the same grouping, the same names.
        sequence_numbers = [r.get("kinesis", {}).get("sequenceNumber") for r in event["Records"]]
        logger.warning(
            "transient lake write failures: the batch is redelivered whole",
            extra={"failed_records": failed, "batch_records": len(sequence_numbers)},
        )
        return {"batchItemFailures": [{"itemIdentifier": s} for s in sequence_numbers]}

    def _publish(self, report: IngestReport) -> None:
        """EMF metrics: totals under the service dimension (dashboard, no-weblogs alarm) and
        filtered/quarantined counts per reason under service + reason."""
        count = MetricUnit.Count
        self.metrics.add_metric(name="EventsReceived", unit=count, value=report.received)
        self.metrics.add_metric(name="EventsWritten", unit=count, value=report.written)
        self.metrics.add_metric(name="EventsFiltered", unit=count, value=report.filtered_total)
        self.metrics.add_metric(
            name="EventsQuarantined", unit=count, value=report.quarantined_total
        )
        self.metrics.add_metric(name="EventsDuplicate", unit=count, value=report.duplicates)
        self.metrics.add_metric(name="EventsFailed", unit=count, value=report.failed)
        self.metrics.add_metric(name="HistoryErrors", unit=count, value=report.history_errors)
        if report.newest_event is not None:
            lag = (datetime.now(UTC) - report.newest_event).total_seconds()
            self.metrics.add_metric(name="IngestLagSeconds", unit=MetricUnit.Seconds, value=lag)
        for name, by_reason in (
            ("EventsFiltered", report.filtered),
            ("EventsQuarantined", report.quarantined),
        ):
            for reason, value in by_reason.items():
                with single_metric(
                    name=name, unit=count, value=value, namespace=self.metrics.namespace
                ) as metric:
                    metric.add_dimension(name="service", value=SERVICE)
                    metric.add_dimension(name="reason", value=reason)


_processor: WeblogProcessor | None = None


def set_processor(processor: WeblogProcessor | None) -> None:
    """Inject a processor (tests, or a container that builds its own clients)."""
    global _processor
    _processor = processor


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (handler = handler.lambda_handler)."""
    global _processor
    if _processor is None:
        _processor = WeblogProcessor.from_env()
    return _processor.handle(event, context)


handler = lambda_handler  # the image's CMD names handler.handler (terraform/modules/ingest)
