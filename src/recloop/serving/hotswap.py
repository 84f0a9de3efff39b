"""Zero-downtime model updates: poll the registry, download, verify, warm, swap one reference.

Every worker runs its own watcher. A request reads `holder.current` once and finishes on that
model, so a swap never changes a request half-way. A version that fails verification (checksum,
shapes, smoke query, an artifact with unsafe or missing files) is remembered and never served;
the old model stays, with a metric and a log line. A transient failure (the object store or a
backend not answering, a download cut off) is retried with backoff, and again at every poll:
it never marks the version, so every worker ends up serving the same champion. Rolling back is
approving the previous version (or rejecting the current champion): the watcher serves
whatever the registry's champion is.

During a new champion's guard window (`guard_window_s` after its approval) the model it
replaced stays loaded, and a deterministic, user-hashed share of actors (`holdback_share`) keeps
being served by it: the two arms run side by side, each impression carries the version that
served it, and the loop's guard compares them (recloop.loop.guard). A rollback inside the
window swaps back to the held model without a download.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from recloop.registry.base import ArtifactError
from recloop.serving.errors import BackendError
from recloop.serving.model import ServedModel, file_lock

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"^\.+")  # "." and ".." name folders outside the cache
# Download attempts within one poll, and the first pause between them (doubled each time).
DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_S = 0.5


def holdback_user(actor_id: str, salt: str, share: float) -> bool:
    """Whether `actor_id` is in the held-back share: a hash, the same in every worker and
    request; `salt` (the new champion's version) draws other users for each guard window."""
    digest = hashlib.blake2b(f"{salt}\x00{actor_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < share * 2**64


@dataclass(frozen=True)
class Holdback:
    """The previous champion, kept for a share of users until the guard window ends."""

    previous: ServedModel
    salt: str  # the new champion's version
    share: float
    until: float  # epoch seconds

    def serves(self, actor_id: str, now: float) -> bool:
        return now < self.until and holdback_user(actor_id, self.salt, self.share)


class ModelHolder:
    """The one reference requests read; swapped atomically (a single attribute store)."""

    def __init__(self, model: ServedModel | None = None) -> None:
        self.current: ServedModel | None = model
        self.holdback: Holdback | None = None
        self.swaps = 0
        self.rejected: dict[str, str] = {}  # version -> why it failed verification

    def for_actor(self, actor_id: str) -> ServedModel | None:
        """The model that answers `actor_id`: the champion, or in its guard window the previous
        champion for the held-back share (each read once: a swap never splits a request)."""
        holdback, current = self.holdback, self.current
        if holdback is not None and holdback.serves(actor_id, time.time()):
            return holdback.previous
        return current

    def swap(self, model: ServedModel) -> ServedModel | None:
        previous, self.current = self.current, model
        self.swaps += 1
        return previous


class Watcher:
    """Polls a ModelRegistry every `interval` seconds and swaps in a new champion."""

    def __init__(
        self,
        registry: Any,
        holder: ModelHolder,
        cache_dir: Path,
        load: Callable[[Path, str], ServedModel],
        interval: float = 10.0,
        on_swap: Callable[[ServedModel], None] | None = None,
        on_reject: Callable[[str, str], None] | None = None,
        on_transient: Callable[[str, str], None] | None = None,
        backoff_s: float = DOWNLOAD_BACKOFF_S,
        holdback_share: float = 0.0,
        guard_window_s: float = 0.0,
    ) -> None:
        self.registry = registry
        self.holder = holder
        self.cache_dir = Path(cache_dir)
        self.load = load
        self.interval = interval
        self._on_swap = on_swap or (lambda model: None)
        self._on_reject = on_reject or (lambda version, why: None)
        self._on_transient = on_transient or (lambda version, why: None)
        self.backoff_s = backoff_s
        self.holdback_share = holdback_share
        self.guard_window_s = guard_window_s
        self._check_lock = threading.Lock()
        self.last_error: str | None = None

    def check_once(self) -> ServedModel | None:
        """One poll (blocking); returns the model swapped in, if any."""
        with self._check_lock:
            try:
                champion = self.registry.champion()
            except Exception as exc:  # any registry outage (boto, network): keep serving
                self.last_error = f"registry: {exc}"
                log.warning("model registry %s did not answer: %s", self.registry.uri, exc)
                return None
            held = self.holder.holdback
            if held is not None and time.time() >= held.until:
                self.holder.holdback = None  # the guard window is over: release the old model
            current = self.holder.current
            if champion is None or (current is not None and current.version == champion.version):
                return None
            version = champion.version
            if held is not None and held.previous.version == version:
                # A rollback inside the guard window: the held model is loaded and warm.
                self.holder.holdback = None
                self.holder.swap(held.previous)
                log.info("rolled back to model %s (was %s)", version, current and current.version)
                self._on_swap(held.previous)
                return held.previous
            if version in self.holder.rejected:
                return None
            try:
                folder = self._download_retrying(version)
                # One worker loads at a time: loading takes a core for seconds, and workers
                # loading together left requests no core at all (p99 during swaps).
                with file_lock(self.cache_dir / ".load.lock"):
                    model = self.load(folder, version)
            except (_Transient, BackendError) as exc:  # not the version's fault: poll again
                self.last_error = f"{version}: {exc}"
                log.warning("model %s not loaded yet, will retry: %s", version, exc)
                self._on_transient(version, str(exc))
                return None
            except Exception as exc:  # whatever else breaks a candidate, it is not served
                self.holder.rejected[version] = str(exc)
                self.last_error = f"{version}: {exc}"
                log.error("model %s failed verification and is not served: %s", version, exc)
                self._on_reject(version, str(exc))
                return None
            replaced = self.holder.swap(model)
            self.holder.holdback = self._holdback(replaced, champion)
            self.last_error = None
            log.info("now serving model %s (was %s)", version, current and current.version)
            self._on_swap(model)
            return model

    def _holdback(self, replaced: ServedModel | None, champion: Any) -> Holdback | None:
        """Keep the replaced model for the held-back share until the guard window closes."""
        if replaced is None or self.holdback_share <= 0 or self.guard_window_s <= 0:
            return None
        decided = getattr(champion, "decided_at", None)
        start = datetime.fromisoformat(decided).timestamp() if decided else time.time()
        until = start + self.guard_window_s
        if until <= time.time():
            return None  # approved longer ago than the window (a worker catching up)
        return Holdback(replaced, champion.version, self.holdback_share, until)

    def _download_retrying(self, version: str) -> Path:
        """Download with backoff. An unusable artifact (ArtifactError) fails at once; any other
        failure is retried and, after the last attempt, raised as _Transient."""
        for attempt in range(DOWNLOAD_ATTEMPTS):
            try:
                return self._download(version)
            except ArtifactError:
                raise
            except Exception as exc:  # boto, network, disk: none of them is the version's
                if attempt == DOWNLOAD_ATTEMPTS - 1:
                    raise _Transient(f"{type(exc).__name__}: {exc}") from exc
                pause = self.backoff_s * 2**attempt
                log.warning("download of model %s failed, retry in %.1f s: %s", version, pause, exc)
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _download(self, version: str) -> Path:
        dest = cache_folder(self.cache_dir, version)
        # Workers share the cache: one downloads while the others wait, then all map the files.
        with file_lock(self.cache_dir / f".{dest.name}.lock"):
            marker = dest / "model_version.json"
            if dest.exists() and not marker.is_file():
                shutil.rmtree(dest)  # a download that died half-way
            path: Path = self.registry.download(version, dest)
            return path

    async def run(self) -> None:
        """Poll until cancelled; each check runs in a thread, off the event loop."""
        while True:
            try:
                await asyncio.to_thread(self.check_once)
            except Exception:  # the watcher must outlive any one bad poll
                log.exception("model watcher poll failed")
            await asyncio.sleep(self.interval)


def cache_folder(cache_dir: Path, version: str) -> Path:
    """The folder a version is downloaded to: always a direct child of `cache_dir`.

    A version is a registry's string: separators become "_", and leading dots too, so "..",
    "." or "../x" still name a folder inside the cache.
    """
    return Path(cache_dir) / _DOTS.sub("_", _SAFE.sub("_", version))


class _Transient(Exception):
    """A download that kept failing for a reason outside the version (the cause follows)."""
