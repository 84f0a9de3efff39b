"""The Kinesis event source mapping: GetRecords -> the function, as Lambda's poller does it.

Per shard, records are read from TRIM_HORIZON and handed to the function in batches of at most
`batch_size` records, waiting up to `window` seconds to fill one (Terraform's batch_size and
maximum_batching_window_in_seconds). The event is the Lambda Kinesis event shape. With
ReportBatchItemFailures, a response listing batchItemFailures makes the poller retry from the
lowest listed sequence number; a function error retries the whole batch. After
`max_retries` retries the records are given up on and counted (Terraform sends them to the
on-failure destination). Not played: parallelization_factor (one batch per shard at a time)
and bisect_batch_on_function_error.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from recloop.harness.functions import FunctionError, LambdaFunction
from recloop.harness.terraform import ACCOUNT, REGION

log = logging.getLogger(__name__)


@dataclass
class MappingStats:
    batches: int = 0
    records: int = 0
    retries: int = 0
    given_up: int = 0


class KinesisEventSource:
    """Polls one stream and invokes one function (start() / stop())."""

    def __init__(
        self,
        client: Any,
        stream: str,
        function: LambdaFunction,
        batch_size: int = 500,
        window: float = 5.0,
        max_retries: int = 3,
    ) -> None:
        self.client = client
        self.stream = stream
        self.function = function
        self.batch_size = batch_size
        self.window = window
        self.max_retries = max_retries
        self.stats = MappingStats()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"esm-{stream}", daemon=True)
        self._arn = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}"
        self._pending = 0  # records read but not yet handed over, for `drain`

    def start(self) -> KinesisEventSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def drain(self, at_least: int, timeout: float = 120.0) -> bool:
        """Wait until `at_least` records were handed to the function (or given up on)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats.records + self.stats.given_up >= at_least and not self._pending:
                return True
            time.sleep(0.2)
        return False

    def _shards(self) -> list[str]:
        shards = self.client.list_shards(StreamName=self.stream)["Shards"]
        return [s["ShardId"] for s in shards]

    def _run(self) -> None:
        iterators: dict[str, str] = {}
        buffers: dict[str, list[dict[str, Any]]] = {}
        first_seen: dict[str, float] = {}
        for shard in self._shards():
            iterators[shard] = self.client.get_shard_iterator(
                StreamName=self.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            buffers[shard] = []
        while not self._stop.is_set():
            idle = True
            for shard, iterator in list(iterators.items()):
                room = self.batch_size - len(buffers[shard])
                try:
                    page = self.client.get_records(ShardIterator=iterator, Limit=max(room, 1))
                except Exception as exc:  # the poller keeps polling, as Lambda's does
                    self.errors.append(f"GetRecords: {exc}")
                    time.sleep(0.5)
                    continue
                iterators[shard] = page["NextShardIterator"]
                if page["Records"]:
                    idle = False
                    buffers[shard].extend(page["Records"])
                    first_seen.setdefault(shard, time.monotonic())
                self._pending = sum(len(b) for b in buffers.values())
                full = len(buffers[shard]) >= self.batch_size
                waited = time.monotonic() - first_seen.get(shard, time.monotonic())
                if buffers[shard] and (full or waited >= self.window or self._stop.is_set()):
                    batch, buffers[shard] = buffers[shard], []
                    first_seen.pop(shard, None)
                    self._deliver(shard, batch)
                    self._pending = sum(len(b) for b in buffers.values())
            if idle:
                self._stop.wait(1.0)  # Lambda polls an idle shard about once a second

    def _deliver(self, shard: str, records: list[dict[str, Any]]) -> None:
        batch = records
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                response = self.function.invoke(self._event(shard, batch))
            except FunctionError as exc:
                self.errors.append(str(exc))
                log.warning("weblog batch failed (attempt %d): %s", attempt + 1, exc)
                continue  # a function error: the same batch again
            failures = (response or {}).get("batchItemFailures") or []
            self.stats.batches += 1
            if not failures:
                self.stats.records += len(batch)
                return
            # Checkpoint before the lowest failed sequence number; retry from there.
            lowest = min(int(f["itemIdentifier"]) for f in failures)
            done = [r for r in batch if int(r["SequenceNumber"]) < lowest]
            self.stats.records += len(done)
            batch = [r for r in batch if int(r["SequenceNumber"]) >= lowest]
        self.stats.given_up += len(batch)
        log.error(
            "gave up on %d records of %s after %d retries", len(batch), shard, self.max_retries
        )

    def _event(self, shard: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"],
                        "data": base64.b64encode(r["Data"]).decode("ascii"),
                        "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard}:{r['SequenceNumber']}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/weblog-processor",
                    "awsRegion": REGION,
                    "eventSourceARN": self._arn,
                }
                for r in records
            ]
        }
