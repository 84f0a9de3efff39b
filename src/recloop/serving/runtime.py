"""Everything one API process holds, built from Settings (or handed in by tests)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from recloop.config import Settings
from recloop.errors import ConfigError
from recloop.monitoring.service_metrics import ServiceMetricsLog, SnapshotRecorder
from recloop.serving.candidates.base import CandidateSource, Placement
from recloop.serving.features import FeatureStore, features_from_uri
from recloop.serving.health import BackendMonitor
from recloop.serving.hotswap import ModelHolder, Watcher
from recloop.serving.metrics import ServingMetrics
from recloop.serving.model import ServedModel, file_lock, load_served_model, one_item_row
from recloop.serving.resilience import Guard
from recloop.serving.service import RecommendationService
from recloop.serving.sinks import EventSink

log = logging.getLogger(__name__)

# The event name of the log line a rejected champion writes (a CloudWatch metric filter's key).
REJECTED_EVENT = "recloop.model_rejected"
# Seconds between service-metric snapshots appended to the local log (the laptop dashboard).
_SNAPSHOT_EVERY = 10.0
# How long a process without a model waits between on-request load attempts (Lambda).
_LAZY_LOAD_EVERY = 5.0
# Catalogue reads at publish time go in small chunks, each under the request deadline, retried.
_CATALOGUE_CHUNK = 500
_CATALOGUE_TRIES = 3
# Seconds the catalogue read pauses between chunks while requests are being served.
_CATALOGUE_PAUSE = 0.001
# Seconds between hand-backs of the allocator's free pages (see release_free_memory).
_TRIM_EVERY_S = 5.0
# The GIL switch interval while a model loads beside requests (seconds).
_LOAD_SWITCH_INTERVAL = 0.0005


@dataclass
class Runtime:
    """The app's state: backends, the model holder and its watcher, metrics, the service."""

    settings: Settings
    features: FeatureStore
    candidates: CandidateSource
    sink: EventSink
    registry: Any | None
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    snapshots: SnapshotRecorder = field(default_factory=SnapshotRecorder)
    holder: ModelHolder = field(default_factory=ModelHolder)
    watcher: Watcher | None = None
    service: RecommendationService = field(init=False)
    _watch_task: asyncio.Task[None] | None = None
    _snapshot_task: asyncio.Task[None] | None = None
    _trim_task: asyncio.Task[None] | None = None
    _backends_task: asyncio.Task[None] | None = None
    backends: BackendMonitor = field(init=False)
    # The version whose catalogue read an outage cut short: read again once the store answers.
    _catalogue_due: str | None = None
    _last_lazy_load: float = 0.0
    _last_lazy_repair: float = 0.0
    _repair_thread: threading.Thread | None = None
    _info_labels: tuple[str, str] | None = None
    _blas_limits: Any = None

    def __post_init__(self) -> None:
        timeout = self.settings.backend_timeout_ms / 1000.0
        self.service = RecommendationService(
            holder=self.holder,
            features=self.features,
            candidates=self.candidates,
            sink=self.sink,
            metrics=self.metrics,
            features_guard=Guard("features", timeout, self.features.blocking_io),
            candidates_guard=Guard("candidates", timeout, self.candidates.blocking_io),
            history_guard=Guard(
                "history",
                self.settings.history_write_timeout_ms / 1000.0,
                self.features.blocking_io,
            ),
        )
        self.backends = BackendMonitor(
            {"features": self.features.ping, "candidates": self.candidates.ping}, self.metrics
        )
        if self.registry is not None and self.watcher is None:
            self.watcher = Watcher(
                self.registry,
                self.holder,
                Path(self.settings.model_cache_dir),
                self.load_model,
                interval=self.settings.watch_interval_seconds,
                on_swap=self._swapped,
                on_reject=self._rejected,
                on_transient=lambda version, why: self.metrics.model_download_errors.inc(),
                holdback_share=self.settings.guard_holdback_share,
                guard_window_s=self.settings.guard_window_minutes * 60.0,
            )

    def _rejected(self, version: str, why: str) -> None:
        self.metrics.model_rejected.labels(version).inc()
        # One JSON line with a fixed event name: the serving log group's metric filter turns it
        # into the ChampionRejected metric that pages on-call (terraform/modules/monitoring).
        log.error(json.dumps({"event": REJECTED_EVENT, "model_version": version, "why": why[:500]}))

    def load_model(self, folder: Path, version: str) -> ServedModel:
        """Load, verify, publish and warm one version (never touches the served reference)."""
        # The load runs in the watcher's thread, mostly in Python (the catalogue read, the item
        # table). With the default 5 ms GIL switch interval a request waited up to 5 ms each
        # time it needed the GIL back; 0.5 ms keeps requests flowing while a model loads.
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, _LOAD_SWITCH_INTERVAL))
        try:
            return self._load_model(folder, version)
        finally:
            sys.setswitchinterval(previous)

    def _load_model(self, folder: Path, version: str) -> ServedModel:
        model = load_served_model(folder, version, registry_uri=getattr(self.registry, "uri", None))
        self._catalogue_due = None if self._read_catalogue(model) else model.version
        self.candidates.publish(model)  # a backend outage leaves it pending, never raises
        warm(model)
        return model

    def _read_catalogue(self, model: ServedModel) -> bool:
        """Fill the model's item table and category index from the feature store, by chunks.

        Each chunk goes into the table as it arrives: holding the whole catalogue as objects
        first peaked at ~50 MB per worker at 100k items, and the allocator kept that memory.
        A store outage part-way leaves the remaining rows to be read on request, and returns
        False: the backend monitor reads the catalogue again once the store answers.
        """
        items_version = self._items_version()  # before the read: a change during it shows
        if items_version is not None:
            model.items.confirm(items_version)  # rows read from here on stay valid until then
        groups: dict[str, list[int]] = {}
        try:
            for start in range(0, model.n_items, _CATALOGUE_CHUNK):
                rows = np.arange(start, min(model.n_items, start + _CATALOGUE_CHUNK))
                ids = model.item_ids_of(rows)
                fetched = self._catalogue_chunk(ids)
                model.items.fill(rows, ids, fetched)
                for row, item_id in zip(rows.tolist(), ids, strict=True):
                    item = fetched.get(item_id)
                    for category in item.categories if item is not None else ():
                        groups.setdefault(category, []).append(row)
                time.sleep(_CATALOGUE_PAUSE)  # hand the GIL to requests between chunks
        except Exception as exc:  # a catalogue outage must not block a model update
            log.warning("item metadata for model %s incomplete: %s", model.version, exc)
            complete = False
        else:
            complete = True
        model.category_items = {c: np.asarray(v, dtype=np.int64) for c, v in groups.items()}
        return complete

    def _items_version(self) -> int | None:
        """The feature store's items version, when it keeps one (see ItemTable.confirm)."""
        versioned = getattr(self.features, "items_version", None)
        if versioned is None:
            return None
        try:
            return int(versioned())
        except Exception:  # the version is an optimisation: without it rows expire by TTL
            return None

    def _catalogue_chunk(self, ids: list[str]) -> dict[str, Any]:
        for attempt in range(_CATALOGUE_TRIES):
            try:
                return self.features.get_items(ids)
            except Exception:
                if attempt == _CATALOGUE_TRIES - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return {}

    def _swapped(self, model: ServedModel) -> None:
        self.metrics.model_swaps.inc()
        if self._info_labels is not None:  # (clear() is not supported in multiprocess mode)
            self.metrics.model_info.labels(*self._info_labels).set(0)
        self._info_labels = (model.version, model.family)
        self.metrics.model_info.labels(*self._info_labels).set(1)
        # The new model's objects (its item table: ~100k titles and category tuples) are
        # long-lived: keep them out of the collector's full passes too (see `start`).
        gc.freeze()
        # The previous model is still referenced here (by the watcher, by requests in flight):
        # its memory goes back to the system at the next periodic trim (see `_trim_memory`).

    async def ensure_model(self) -> None:
        """Without a watcher loop (Lambda), try loading the champion on request, rate-limited."""
        if self.holder.current is not None:
            if self._backends_task is None:  # no lifespan (Lambda): no backend monitor either
                self._repair_in_background()
            return
        if self.watcher is None:
            return
        now = time.monotonic()
        if now - self._last_lazy_load < _LAZY_LOAD_EVERY:
            return
        self._last_lazy_load = now
        await asyncio.to_thread(self.watcher.check_once)

    def _repair_in_background(self) -> None:
        """The backend monitor's pass, at most every BACKEND_CHECK_SECONDS, in a daemon thread.

        Where no lifespan runs (Lambda) nothing else would publish an index left pending or
        re-read a catalogue an outage cut short. A thread keeps the request from waiting; Lambda
        freezes it between invocations and it resumes with the next one.
        """
        now = time.monotonic()
        if now - self._last_lazy_repair < self.settings.backend_check_seconds:
            return
        self._last_lazy_repair = now
        if self._repair_thread is not None and self._repair_thread.is_alive():
            return
        self._repair_thread = threading.Thread(
            target=self._check_and_repair, name="recloop-repair", daemon=True
        )
        self._repair_thread.start()

    def _check_and_repair(self) -> None:
        try:
            asyncio.run(self.backends.check())
            self.repair()
        except Exception:  # a failed pass is retried at the next one
            log.exception("backend check failed")

    async def start(self) -> None:
        """Start the sink thread, load the champion, then poll the registry in the background."""
        # Requests do small matrix products: BLAS threads would only contend with the other
        # workers for the same cores.
        self._blas_limits = threadpool_limits(limits=1)
        self.sink.start()
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.check_once)
            self._watch_task = asyncio.create_task(self._watch())
        # Everything alive now (imports, the model) lives as long as the process. A full
        # collection scanned those ~110k objects for ~0.1 s of CPU a few times a minute under
        # load; frozen, they are skipped (the pre-fork server recipe of the gc module docs).
        # Frozen objects are still freed by reference counting: a swapped-out model is.
        gc.collect()
        gc.freeze()
        release_free_memory()
        self._trim_task = asyncio.create_task(self._trim_memory())
        self._backends_task = asyncio.create_task(self._watch_backends())
        # Snapshots feed the laptop's dashboard; in AWS, Prometheus and EMF carry the same
        # figures, and many tasks rewriting one S3 object would only contend.
        if self.settings.monitor_service_metrics_uri.startswith("file://"):
            self._snapshot_task = asyncio.create_task(self._record_snapshots())

    async def _watch(self) -> None:
        assert self.watcher is not None
        await asyncio.sleep(self.settings.watch_interval_seconds)
        await self.watcher.run()

    async def _watch_backends(self) -> None:
        """Check the backends now and then, and repair what an outage left once they answer."""
        while True:
            try:
                await self.backends.check()
                await asyncio.to_thread(self.repair)
            except Exception:  # the monitor must outlive any one bad pass
                log.exception("backend check failed")
            await asyncio.sleep(self.settings.backend_check_seconds)

    def repair(self) -> None:
        """Finish what a backend outage cut short for the served model (blocking)."""
        model = self.holder.current
        if model is None:
            return
        due = self._catalogue_due == model.version and self.backends.up("features")
        if due and self._read_catalogue(model):
            self._catalogue_due = None
            log.info("item metadata for model %s complete", model.version)
        if self.candidates.placement(model) is Placement.PENDING and self.backends.up("candidates"):
            # Under the load lock: a publication is as heavy as a load, and a swap publishing
            # the next version at the same time would race it for the alias.
            with file_lock(Path(self.settings.model_cache_dir) / ".load.lock"):
                if self.holder.current is model:
                    self.candidates.publish(model)

    async def _trim_memory(self) -> None:
        # Under load the event sink's Parquet writes and the swaps' temporaries leave freed
        # pages in glibc's arenas (+30-40 MiB per worker); a trim every few seconds returns
        # them. It runs in a thread: ctypes releases the GIL, requests go on.
        while True:
            await asyncio.sleep(_TRIM_EVERY_S)
            await asyncio.to_thread(release_free_memory)

    async def _record_snapshots(self) -> None:
        while True:
            await asyncio.sleep(_SNAPSHOT_EVERY)
            await asyncio.to_thread(self.append_snapshot)

    def append_snapshot(self) -> None:
        """Append the requests since the last snapshot to the service-metrics log."""
        model = self.holder.current
        snap = self.snapshots.flush(model_version=model.version if model else None)
        if snap.requests:
            try:
                ServiceMetricsLog.from_settings(self.settings).append(snap)
            except Exception as exc:  # the dashboard's data must never take the API down
                log.warning("service snapshot not written: %s", exc)

    async def stop(self) -> None:
        """Stop polling, deliver queued events, close connections."""
        tasks = (self._watch_task, self._snapshot_task, self._trim_task, self._backends_task)
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watch_task = self._snapshot_task = self._trim_task = self._backends_task = None
        if self.settings.monitor_service_metrics_uri.startswith("file://"):
            await asyncio.to_thread(self.append_snapshot)
        await asyncio.to_thread(self.sink.close, 5.0)
        self.features.close()
        gc.unfreeze()  # tests run many apps in one process
        if self._blas_limits is not None:  # tests run many apps in one process
            self._blas_limits.restore_original_limits()
            self._blas_limits = None


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc; elsewhere a no-op).

    Loading a model allocates and frees hundreds of MB of temporaries (the catalogue read,
    id lists, the old model's objects), and the event sink's Parquet writes churn more.
    glibc keeps freed pages mapped; malloc_trim returns them (a few ms).
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators return memory themselves
        return None


def warm(model: ServedModel) -> None:
    """Touch the lazily built maps and the hot code paths before the model takes traffic."""
    first = int(model.popular[0])
    vector = model.user_vector(one_item_row(first, model.n_items))
    model.score(vector, model.neighbours[first].astype("int64").clip(0))
    model.index_of(model.item_id(first))


def build_runtime(settings: Settings, **overrides: Any) -> Runtime:
    """A Runtime from Settings; keyword overrides replace any backend (tests, Lambda)."""
    timeout_ms = settings.backend_timeout_ms
    features = overrides.pop("features", None) or features_from_uri(
        settings.features_uri, timeout_ms
    )
    candidates = overrides.pop("candidates", None) or candidates_from_uri(
        settings.candidates_uri, timeout_ms, features
    )
    registry = overrides.pop("registry", "default")
    if registry == "default":
        from recloop.registry import registry_from_uri

        # The serving task's sagemaker:// registry keeps its bundles at the artifacts URI.
        registry = registry_from_uri(
            settings.registry_uri, artifacts_uri=settings.registry_artifacts_uri or None
        )
    sink = overrides.pop("sink", None) or sink_from_uri(settings, features)
    return Runtime(
        settings=settings,
        features=features,
        candidates=candidates,
        sink=sink,
        registry=registry,
        **overrides,
    )


def candidates_from_uri(
    uri: str, timeout_ms: int, features: FeatureStore | None = None
) -> CandidateSource:
    """inprocess:// or elasticsearch+http(s)://host:port."""
    if uri.startswith("inprocess://"):
        from recloop.serving.candidates.inprocess import InProcessCandidates

        return InProcessCandidates()
    if uri.startswith(("elasticsearch+http://", "elasticsearch+https://")):
        from recloop.serving.candidates.elasticsearch import ElasticsearchCandidates

        return ElasticsearchCandidates.from_url(
            uri.removeprefix("elasticsearch+"),
            timeout_ms,
            catalogue=None if features is None else features.get_items,
        )
    raise ConfigError(f"unsupported RECLOOP_CANDIDATES_URI {uri!r}")


def sink_from_uri(settings: Settings, features: FeatureStore) -> EventSink:
    """lake:// (the Ingestor, history into `features`) or kinesis://STREAM."""
    uri = settings.events_uri
    size = settings.event_queue_size
    if uri.startswith("lake://"):
        from recloop.ingest.ingestor import Ingestor
        from recloop.lake import Lake
        from recloop.serving.sinks import LakeEventSink

        ingestor = Ingestor(Lake.from_uri(settings.lake_uri), settings, history_sink=features)
        return LakeEventSink(ingestor, max_queue=size)
    if uri.startswith("kinesis://") and len(uri) > len("kinesis://"):
        import boto3

        from recloop.serving.sinks import KinesisEventSink

        return KinesisEventSink(
            boto3.client("kinesis"), uri.removeprefix("kinesis://"), max_queue=size
        )
    raise ConfigError(f"unsupported RECLOOP_EVENTS_URI {uri!r}: use lake:// or kinesis://STREAM")
