"""Environment defaults for API worker processes; they only act when set before a process starts.

Measured with 2 uvicorn workers serving a 100k-item model under load (docs/benchmarks.md,
Serving): 129-138 MiB anonymous memory per worker with glibc's and Arrow's defaults, 120 MiB
with these. glibc otherwise gives each thread that allocates (the event sink's, the model
watcher's) its own arena, and Arrow's mimalloc pool keeps what the sink's Parquet writes freed.
A fixed mmap threshold: glibc's default one rises to the size of the largest block freed (up
to 32 MiB), so a model download's array-sized buffers came from the watcher thread's arena
afterwards, and that arena's free top stayed resident (+16 MiB in the worker that downloads;
malloc_trim does not release an arena's top).
"""

from __future__ import annotations

from collections.abc import MutableMapping

WORKER_ENV: dict[str, str] = {
    "MALLOC_ARENA_MAX": "2",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),  # glibc's initial value, kept fixed
}


def apply_worker_env(env: MutableMapping[str, str]) -> None:
    """Add the defaults to `env` (os.environ before workers start); set values win."""
    for name, value in WORKER_ENV.items():
        env.setdefault(name, value)
