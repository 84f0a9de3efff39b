"""EventSinks: where /events and the impressions go, always off the request path.

Both implementations put events in a bounded in-memory buffer that one background thread drains
in batches; when the queue is full `submit` raises SinkFullError (the API answers 503 with
Retry-After), so memory never grows without bound: at most `max_queue` queued plus the one batch
being delivered. A failed delivery is retried with exponential backoff and full jitter (tenacity)
for `retry_budget_s` (5 minutes by default: a lake or stream outage of that length loses
nothing), while new events wait in the buffer or are refused with 503. Only what is still
undelivered after the budget, or when the process stops mid-retry, is dropped: every dropped
event is counted (`dropped`, recloop_sink_events{outcome="dropped"}) and logged.
    LakeEventSink     embedded: the Ingestor writes the batch into the lake (and, through its
                      history sink, into the feature store)
    KinesisEventSink  AWS: PutRecords, at most 500 records per call, failed records retried

Impressions are queued as `Impression` records, not events: every answer makes one, and building
a validated Event per answer cost ~5 us of the request; the lake sink turns a batch of them into
an Arrow table directly (`impressions_table`), other sinks into the same events as before.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import orjson
import pyarrow as pa
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from recloop.errors import TransientStoreError
from recloop.events import EVENT_SCHEMA, SCHEMA_VERSION, Context, Event, EventType
from recloop.serving.errors import SinkFullError

log = logging.getLogger(__name__)

_KINESIS_MAX_RECORDS = 500
_KINESIS_MAX_BYTES = 5 * 1024 * 1024
_KINESIS_MAX_RECORD_BYTES = 1024 * 1024  # data + partition key of one record


_NO_CONTEXT = Context()


@dataclass(slots=True)
class Impression:
    """What one answer showed, as queued: the sink makes the impression event of it."""

    rec_id: str
    actor_id: str
    signed_in: bool  # actor_id is a user_id (else an anonymous visitor_id)
    item_ids: list[str]
    model_version: str
    timestamp: datetime

    def event(self) -> Event:
        """The impression event (built from values already validated: no re-validation)."""
        return Event.model_construct(
            event_id=f"imp-{self.rec_id}",
            event_type=EventType.IMPRESSION,
            timestamp=self.timestamp,
            item_ids=list(self.item_ids),
            positions=list(range(len(self.item_ids))),
            rec_id=self.rec_id,
            model_version=self.model_version,
            source="api",
            user_id=self.actor_id if self.signed_in else None,
            visitor_id=None if self.signed_in else self.actor_id,
            # Every field given: model_construct deep-copies the defaults it fills in.
            item_id=None,
            session_id=None,
            context=_NO_CONTEXT,
            schema_version=SCHEMA_VERSION,
        )


def impressions_table(impressions: Sequence[Impression]) -> pa.Table:
    """The impression events of these records as an Arrow table in EVENT_SCHEMA, by columns.

    The same table as events_table([i.event() for i in impressions]) (tested), without an
    Event per row.
    """
    n = len(impressions)
    lengths = [len(i.item_ids) for i in impressions]
    offsets = pa.array([0, *itertools.accumulate(lengths)], pa.int32())
    flat_ids = pa.array([item for i in impressions for item in i.item_ids], pa.string())
    flat_positions = pa.array([p for length in lengths for p in range(length)], pa.int32())
    nulls = pa.nulls(n, pa.string())
    columns = {
        "event_id": [f"imp-{i.rec_id}" for i in impressions],
        "event_type": [EventType.IMPRESSION.value] * n,
        "timestamp": [i.timestamp for i in impressions],
        "user_id": [i.actor_id if i.signed_in else None for i in impressions],
        "visitor_id": [None if i.signed_in else i.actor_id for i in impressions],
        "item_id": nulls,
        "item_ids": pa.ListArray.from_arrays(offsets, flat_ids),
        "positions": pa.ListArray.from_arrays(offsets, flat_positions),
        "session_id": nulls,
        "rec_id": [i.rec_id for i in impressions],
        "model_version": [i.model_version for i in impressions],
        "page": nulls,
        "referrer": nulls,
        "device": nulls,
        "source": ["api"] * n,
        "schema_version": [SCHEMA_VERSION] * n,
    }
    return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)


Queued = Event | Impression


@runtime_checkable
class EventSink(Protocol):
    """Accepts events without waiting for their delivery."""

    def submit(self, events: Sequence[Event]) -> None:
        """Queue events; SinkFullError when the queue has no room for all of them."""
        ...

    def submit_impression(self, impression: Impression) -> None:
        """Queue one answer's impression; SinkFullError when the queue is full."""
        ...

    def start(self) -> None:
        """Start the background delivery thread (idempotent)."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop."""
        ...


class QueuedSink(ABC):
    """A bounded buffer drained by one daemon thread in batches; subclasses deliver a batch.

    The buffer is a deque, not a queue.Queue: every Queue.put/get takes a lock and notifies a
    condition, which cost ~0.09 ms of CPU per impression (a fifth of a recommendation) in
    contention with the request thread. Appending to a deque is atomic under the GIL; the
    thread wakes every `linger_s`, or as soon as a full batch is waiting, and takes all.
    """

    def __init__(
        self,
        max_queue: int = 10_000,
        batch_size: int = 500,
        linger_s: float = 0.05,
        retry_budget_s: float = 300.0,
        backoff_s: float = 0.05,
        max_backoff_s: float = 30.0,
        on_outcome: Callable[[str, int], None] | None = None,
    ) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.retry_budget_s = retry_budget_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._on_outcome = on_outcome or (lambda outcome, n: None)
        self._buffer: deque[Queued] = deque()
        self._wake = threading.Event()
        self._abandon = threading.Event()  # close() timed out: stop retrying, count the rest
        self._stopping = False
        self._delivering = False  # set before a batch leaves the buffer, cleared after
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0

    @property
    def depth(self) -> int:
        return len(self._buffer)

    def submit(self, events: Sequence[Event]) -> None:
        # Room is checked for the whole request, so a request's events are never split.
        if self.max_queue - len(self._buffer) < len(events):
            raise SinkFullError(retry_after=1)
        self._buffer.extend(events)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def submit_impression(self, impression: Impression) -> None:
        if len(self._buffer) >= self.max_queue:
            raise SinkFullError(retry_after=1)
        self._buffer.append(impression)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._abandon.clear()
                self._thread = threading.Thread(
                    target=self._run, name=type(self).__name__, daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping = True  # the thread delivers what is buffered, then ends
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():  # a backend still down: give up, and count what is lost
            self._abandon.set()
            thread.join(1.0)
        self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far was handed on; False on timeout (tests, drain)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if not self._buffer and not self._delivering:
                return True
            time.sleep(0.005)
        return False

    def _run(self) -> None:
        while True:
            stopping = self._stopping
            if not stopping and len(self._buffer) < self.batch_size:
                self._wake.wait(self.linger_s)
            self._wake.clear()
            # Only what is buffered now: events arriving during a delivery wait for the next
            # linger, or a busy server would write a stream of tiny batches (and objects).
            waiting = len(self._buffer)
            if self._abandon.is_set():
                self._drop([self._buffer.popleft() for _ in range(waiting)], "stopping")
                return
            while waiting:
                self._delivering = True
                n = min(self.batch_size, waiting)  # only this thread takes
                batch = [self._buffer.popleft() for _ in range(n)]
                waiting -= n
                self._deliver_with_retries(batch)
                self._delivering = False
            if stopping and not self._buffer:
                return

    def _deliver_with_retries(self, batch: list[Queued]) -> None:
        """Deliver, retrying what is still pending with backoff until the budget is spent."""
        batch = self._sendable(batch)
        pending = batch

        def attempt() -> list[Queued]:
            nonlocal pending
            pending = self._deliver(pending)
            return pending

        retrying = Retrying(
            # retried: an exception (the whole pending part again) or records left over
            retry=retry_if_exception_type() | retry_if_result(bool),
            stop=stop_after_delay(self.retry_budget_s) | _StopWhen(self._abandon),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            sleep=self._backoff,  # a closing process cuts a backoff short
            before_sleep=_log_retry,
            retry_error_callback=lambda _state: None,
        )
        retrying(attempt)
        delivered = len(batch) - len(pending)
        self.delivered += delivered
        self._on_outcome("delivered", delivered)
        if pending:
            self._drop(pending, f"undelivered after {self.retry_budget_s:.0f} s of retries")

    def _sendable(self, batch: list[Queued]) -> list[Queued]:
        """The batch without what can never be delivered (dropped and counted here, once)."""
        return batch

    def _backoff(self, seconds: float) -> None:
        self._abandon.wait(seconds)

    def _drop(self, events: list[Queued], why: str) -> None:
        if not events:
            return
        self.dropped += len(events)
        self._on_outcome("dropped", len(events))
        log.error("event sink dropped %d events (%d in all): %s", len(events), self.dropped, why)

    @abstractmethod
    def _deliver(self, batch: list[Queued]) -> list[Queued]:
        """Deliver a batch; return what still needs delivering."""


class _StopWhen(stop_base):
    """Stop retrying once `flag` is set."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.flag.is_set()


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    if outcome is not None and outcome.failed:
        why = repr(outcome.exception())
    else:
        why = f"{len(outcome.result()) if outcome is not None else 0} events left"
    log.warning("event sink delivery attempt %d failed (%s); retrying", state.attempt_number, why)


class LakeEventSink(QueuedSink):
    """Embedded: each batch goes through the Ingestor into the lake."""

    def __init__(self, ingestor: Any, **kwargs: Any) -> None:
        # Large, lingering batches: one Parquet object per second or per 5000 events, not per
        # burst. Small objects would cost the workers CPU and the lake its scan speed.
        super().__init__(**{"batch_size": 5_000, "linger_s": 1.0, **kwargs})
        self.ingestor = ingestor

    def _deliver(self, batch: list[Queued]) -> list[Queued]:
        # Batch ids come from the events' (impressions') ids: a retry of a batch whose write
        # failed for one hour rewrites the same object names, so the hours already written are
        # found present (duplicates), not written twice. One bad event is quarantined by the
        # Ingestor, never a reason to fail the batch.
        events = [e for e in batch if isinstance(e, Event)]
        impressions = [e for e in batch if isinstance(e, Impression)]
        failed: list[Queued] = []
        if events:
            try:
                batch_id = "api-" + _digest([e.event_id for e in events])
                self.ingestor.ingest_events(events, batch_id=batch_id)
            except TransientStoreError as exc:  # retried alone: the impressions may be written
                log.warning("event write failed, will retry: %s", exc)
                failed += events
        if impressions:
            try:
                batch_id = "api-imp-" + _digest([i.rec_id for i in impressions])
                self.ingestor.ingest_impressions(impressions_table(impressions), batch_id)
            except TransientStoreError as exc:
                log.warning("impression write failed, will retry: %s", exc)
                failed += impressions
        return failed


class KinesisEventSink(QueuedSink):
    """AWS: PutRecords into a Kinesis stream, partitioned by actor."""

    def __init__(self, client: Any, stream_name: str, **kwargs: Any) -> None:
        super().__init__(**{"batch_size": _KINESIS_MAX_RECORDS, **kwargs})
        self.client = client
        self.stream_name = stream_name

    def _sendable(self, batch: list[Queued]) -> list[Queued]:
        ok = [self._encoded(item) is not None for item in batch]
        if all(ok):
            return batch
        unsendable = [item for item, good in zip(batch, ok, strict=True) if not good]
        self._drop(unsendable, "not sendable to Kinesis (unserialisable or over 1 MiB)")
        return [item for item, good in zip(batch, ok, strict=True) if good]

    @staticmethod
    def _encoded(item: Queued) -> tuple[bytes, str] | None:
        """The record's data and partition key; None when Kinesis could never take it."""
        try:
            event = item if isinstance(item, Event) else item.event()
            data = orjson.dumps(event.model_dump(mode="json"))
        except Exception:
            log.exception("an event cannot be serialised for Kinesis")
            return None
        key = event.actor_id
        if len(data) + len(key.encode()) > _KINESIS_MAX_RECORD_BYTES:
            return None
        return data, key

    def _deliver(self, batch: list[Queued]) -> list[Queued]:
        failed: list[Queued] = []
        encoded = []
        for item in batch:
            record = self._encoded(item)
            if record is not None:  # _sendable dropped the others before the first try
                encoded.append((item, *record))
        for chunk in _kinesis_chunks(encoded):
            records = [{"Data": data, "PartitionKey": key} for _, data, key in chunk]
            response = self.client.put_records(StreamName=self.stream_name, Records=records)
            if response.get("FailedRecordCount", 0):
                failed += [
                    item
                    for (item, _, _), r in zip(chunk, response["Records"], strict=True)
                    if "ErrorCode" in r
                ]
        return failed


def _digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _kinesis_chunks(
    encoded: list[tuple[Queued, bytes, str]],
) -> list[list[tuple[Queued, bytes, str]]]:
    """PutRecords calls: at most 500 records and 5 MiB each."""
    chunks: list[list[tuple[Queued, bytes, str]]] = [[]]
    size = 0
    for entry in encoded:
        n = len(entry[1]) + len(entry[2])
        if len(chunks[-1]) >= _KINESIS_MAX_RECORDS or size + n > _KINESIS_MAX_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += n
    return [c for c in chunks if c]
