"""Test helpers for training, bundles and the registry (importable: tests/ is on sys.path).

`CooccurrenceModel` is a tiny but real Recommender (item-item co-occurrence), so bundle and
registry tests do not depend on which model families happen to exist. Tests that load it call
`register_test_family(monkeypatch)` (an autouse fixture in their module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recloop.training.bundle import BundleMeta, ModelBundle
from recloop.training.models import FAMILIES
from recloop.training.models.base import Recommender


class CooccurrenceModel(Recommender):
    family = "test_cooccurrence"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.sim = np.zeros((0, 0), dtype=np.float32)

    def fit(self, interactions: sp.csr_matrix, ages: sp.csr_matrix | None = None) -> Self:
        binary = (sp.csr_matrix(interactions) > 0).astype(np.float32)
        sim = (binary.T @ binary).toarray()
        np.fill_diagonal(sim, 0)
        self.sim = sim.astype(np.float32)
        self.n_items = interactions.shape[1]
        return self

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        return np.asarray(sp.csr_matrix(histories, dtype=np.float32).toarray())

    def score(self, user_vectors: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        scores = np.asarray(user_vectors) @ self.sim
        return scores if items is None else scores[:, items]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"sim": self.sim}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self.sim = arrays["sim"]


def register_test_family(monkeypatch: Any) -> None:
    """Make CooccurrenceModel loadable for one test (never registered globally: other suites
    iterate FAMILIES)."""
    monkeypatch.setitem(FAMILIES, CooccurrenceModel.family, CooccurrenceModel)


def block_matrix(n_users: int = 40, n_items: int = 20, seed: int = 0) -> sp.csr_matrix:
    """Users in two taste groups: the first half click items [0, n/2), the rest the others."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    half_items = n_items // 2
    for user in range(n_users):
        lo = 0 if user < n_users // 2 else half_items
        picks = rng.choice(np.arange(lo, lo + half_items), size=4, replace=False)
        rows += [user] * len(picks)
        cols += picks.tolist()
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_items))


def make_bundle(
    n_users: int = 40, n_items: int = 20, seed: int = 0, metrics: dict[str, float] | None = None
) -> ModelBundle:
    """A fitted toy bundle with ids u0.. / i0.. and a block-structured history."""
    matrix = block_matrix(n_users, n_items, seed)
    model = CooccurrenceModel(seed=seed).fit(matrix)
    return ModelBundle(
        model=model,
        item_ids=np.array([f"i{j}" for j in range(n_items)]),
        user_ids=np.array([f"u{u}" for u in range(n_users)]),
        item_popularity=np.asarray((matrix > 0).sum(axis=0), dtype=np.float32).ravel(),
        meta=BundleMeta(
            family=model.family,
            params={"seed": seed},
            train_start="2026-01-01T00:00:00+00:00",
            train_end="2026-02-01T00:00:00+00:00",
            snapshot_digest="0" * 64,
            snapshot_rows=int(matrix.nnz),
            metrics=metrics or {"recall@10": 0.5},
            run_id=f"run-{seed}",
        ),
        history=matrix,
    )


def saved_bundle(folder: Path, **kwargs: Any) -> Path:
    """make_bundle(...) saved into `folder`."""
    return make_bundle(**kwargs).save(folder)


def synthetic_events(
    n_users: int = 120,
    n_items: int = 40,
    days: int = 21,
    per_user_per_day: float = 1.0,
    groups: int = 4,
    seed: int = 0,
    start: str = "2026-01-01T00:00:00+00:00",
) -> Any:
    """A pyarrow event table with a known answer: users of group g view and click only items
    of group g, so any personalised model beats popularity on next-week clicks."""
    import pyarrow as pa

    from recloop.events import EVENT_SCHEMA, conform

    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start.replace("+00:00", ""), "ms")
    n = int(n_users * days * per_user_per_day)
    users = rng.integers(0, n_users, n)
    group_of_user = users % groups
    per_group = n_items // groups
    # A skewed choice within the group: some items are much more popular than others.
    offset = np.minimum(rng.zipf(1.6, n) - 1, per_group - 1)
    items = group_of_user * per_group + offset
    # Three busy hours a day keep the lake to a few objects per day (fast tests).
    hour = rng.choice(np.array([9, 13, 20]), n)
    ms = rng.integers(0, days, n) * 86_400_000 + hour * 3_600_000 + rng.integers(0, 3_600_000, n)
    kinds = np.where(rng.random(n) < 0.4, "click", "view")
    table = pa.table(
        {
            "event_id": [f"e{seed}-{i}" for i in range(n)],
            "event_type": kinds,
            "timestamp": pa.array(t0 + ms.astype("timedelta64[ms]"), pa.timestamp("ms", tz="UTC")),
            "user_id": [f"u{u:04d}" for u in users],
            "item_id": [f"i{j:03d}" for j in items],
            "source": ["test"] * n,
            "schema_version": pa.array(np.full(n, 2, np.int16)),
        }
    )
    return conform(table).cast(EVENT_SCHEMA)


def write_synthetic_lake(lake_uri: str, **kwargs: Any) -> Any:
    """synthetic_events(...) written into a lake; returns the Lake."""
    from recloop.lake import Lake

    lake = Lake.from_uri(lake_uri)
    lake.write_events(synthetic_events(**kwargs), batch_id=f"synthetic-{kwargs.get('seed', 0)}")
    return lake


class EventLog:
    """Hand-written events for a lake with a known answer, saved as one batch.

    Events of one call's `at` are spread over the minutes after it, so a day's events are not
    all at one instant.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self, user: str, item: str, at: str, rec_id: str | None = None, kind: str = "click"
    ) -> None:
        from datetime import datetime, timedelta

        self.rows.append(
            {
                "event_id": f"e{len(self.rows)}",
                "event_type": kind,
                "timestamp": datetime.fromisoformat(at) + timedelta(minutes=len(self.rows) % 50),
                "user_id": user,
                "item_id": item,
                "rec_id": rec_id,
                "source": "test",
                "schema_version": 2,
            }
        )

    def popularity_ladder(self, at: str, items: int = 30) -> None:
        """Items p00..: p00 clicked by `items` users, each next item by one user fewer."""
        for j in range(items):
            for n in range(items - j):
                self.add(f"b{j:02d}-{n:02d}", f"p{j:02d}", at)

    def write(self, lake_uri: str, batch_id: str) -> Any:
        """The events written into the lake at `lake_uri`; returns the Lake."""
        import pyarrow as pa

        from recloop.events import EVENT_SCHEMA, conform
        from recloop.lake import Lake

        table = pa.Table.from_pylist(self.rows)
        stamps = table.column("timestamp").cast(pa.timestamp("ms", tz="UTC"))
        table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamps)
        lake = Lake.from_uri(lake_uri)
        lake.write_events(conform(table).cast(EVENT_SCHEMA), batch_id=batch_id)
        return lake
