"""compact: the scheduled compaction of the lake's closed hours (EventBridge -> this Lambda).

Each run compacts the closed hours of the last RECLOOP_COMPACT_LOOKBACK_HOURS that have
something to do, and rolls up the days that ended RECLOOP_COMPACT_ROLLUP_AFTER_HOURS ago
(recloop.lake.compaction). Runs are idempotent and crash-safe: a run that times out or dies
part-way leaves the lake readable and complete, and the next run goes on where it stopped.
Concurrent runs are safe too (the marker is a conditional write), so the schedule needs no lock.

Why a Lambda and not a Glue or SageMaker Processing job: one unit is an hour of a few thousand
small objects (a few hundred MB at most in memory), done in seconds to a minute; a job
service would spend minutes starting a cluster or instance for that, and bill for it. A day
rolled up is merged in memory too: where a day of events outgrows the function's memory, set
RECLOOP_COMPACT_ROLLUP_AFTER_HOURS to 0 (hours only) or run `recloop lake compact` as a
Processing job with the same code.

Environment (recloop.config.Settings): RECLOOP_LAKE_URI (s3://bucket/prefix),
RECLOOP_COMPACT_LOOKBACK_HOURS (96), RECLOOP_COMPACT_SETTLE_MINUTES (15),
RECLOOP_COMPACT_ROLLUP_AFTER_HOURS (48; 0 turns roll-ups off), RECLOOP_COMPACT_TARGET_MB (128).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.lake import Lake, compact

SERVICE = "compact"
# Stop starting units this long before the Lambda's own timeout.
_RESERVE_MS = 90_000
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))


def run(lake: Lake, now: datetime, settings: Settings, context: Any = None) -> dict[str, Any]:
    """One scheduled run: the summary it logs and returns."""
    lookback = timedelta(hours=settings.compact_lookback_hours)
    rollup_hours = settings.compact_rollup_after_hours

    def out_of_time() -> bool:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return remaining is not None and remaining() < _RESERVE_MS

    results = compact(
        lake.store,
        now=now,
        start=now - lookback,
        settle=timedelta(minutes=settings.compact_settle_minutes),
        target_bytes=int(settings.compact_target_mb * 1024 * 1024),
        rollup_after=timedelta(hours=rollup_hours) if rollup_hours else None,
        out_of_time=out_of_time,
    )
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    return {
        "now": now.isoformat(),
        "units": outcomes,
        "objects_folded": sum(r.sources for r in results if r.outcome == "committed"),
        "rows_written": sum(r.rows_out for r in results if r.outcome == "committed"),
        "stopped_early": out_of_time(),
    }


def _scheduled_time(event: dict[str, Any]) -> datetime:
    """The schedule's tick ("time" in an EventBridge scheduled event), else the clock."""
    raw = event.get("time")
    if not raw:
        return datetime.now(UTC)
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise ConfigError(f"event time {raw!r} is not ISO 8601") from exc


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (handler = handler.handler); errors raise, so the run retries."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(f"compaction settings: {exc}") from exc
    if not settings.lake_uri.startswith("s3://"):
        raise ConfigError(f"RECLOOP_LAKE_URI must be an s3:// lake, got {settings.lake_uri!r}")
    summary = run(Lake.from_uri(settings.lake_uri), _scheduled_time(event), settings, context)
    logger.info("compaction run", extra={"summary": summary})
    return summary


handler = lambda_handler  # the image's CMD names handler.handler (terraform/modules/datalake)
