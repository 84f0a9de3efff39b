"""ServedModel: the ALS fold-in accelerator, publish-time lists, verification before serving."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.serving.features.base import HISTORY_WEIGHTS, HistoryEntry
from recloop.serving.model import LISTS_DIR, ALSFoldIn, ServedModel, load_served_model
from recloop.serving.testing import fit_bundle
from recloop.training.bundle import ModelBundle
from recloop.training.models import ModelError


@pytest.fixture(scope="module")
def als_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_bundle(tmp_path_factory.mktemp("als") / "bundle")


def test_cached_fold_in_equals_the_models_own_user_vectors(als_dir: Path) -> None:
    model = ModelBundle.load(als_dir).model
    fold_in = ALSFoldIn.for_model(model)
    assert fold_in is not None
    rows = sp.csr_matrix(
        np.array([[0, 3, 0, 1, 0] + [0] * 40, [0] * 45, [5, 0, 0, 0, 2] + [1] * 40], np.float32)
    )
    np.testing.assert_allclose(fold_in(rows), model.user_vectors(rows), rtol=1e-4, atol=1e-5)


def test_fold_in_is_only_for_als(tmp_path: Path) -> None:
    popularity = ModelBundle.load(fit_bundle(tmp_path / "pop", family="popularity")).model
    assert ALSFoldIn.for_model(popularity) is None


def test_lists_are_computed_once_and_shared(als_dir: Path) -> None:
    first = load_served_model(als_dir, "1")
    stamp = (als_dir / LISTS_DIR / "neighbours.npy").stat().st_mtime_ns
    second = load_served_model(als_dir, "1")
    assert (als_dir / LISTS_DIR / "neighbours.npy").stat().st_mtime_ns == stamp
    assert isinstance(second.neighbours.base, np.memmap)  # workers share the page cache
    np.testing.assert_array_equal(first.neighbours, second.neighbours)
    assert first.neighbours.shape == (45, 50)


@pytest.mark.parametrize("family", ["popularity", "bpr", "itemknn", "ease"])
def test_every_family_loads_and_answers(tmp_path: Path, family: str) -> None:
    served = load_served_model(fit_bundle(tmp_path / family, family=family), "1")
    vector = served.user_vector(served.bundle.history_row(["i0", "i3"]))
    scores = served.score(vector, np.arange(served.n_items))
    assert scores.shape == (45,) and np.all(np.isfinite(scores))


def test_a_truncated_array_is_refused(tmp_path: Path) -> None:
    folder = fit_bundle(tmp_path / "b")
    path = folder / "model" / "item_factors.npy"
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(ModelError):
        load_served_model(folder, "2")


def test_large_catalogues_get_their_lists_from_a_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recloop.serving.model as served_model

    folder = fit_bundle(tmp_path / "b")
    in_process = load_served_model(fit_bundle(tmp_path / "same"), "1")
    monkeypatch.setattr(served_model, "IN_PROCESS_LISTS_UP_TO", 0)
    monkeypatch.setattr(served_model, "_publish_lists", None)  # the parent must not compute
    child = load_served_model(folder, "1")
    np.testing.assert_array_equal(child.neighbours, in_process.neighbours)


def test_id_index_finds_exact_ids_only() -> None:
    from recloop.serving.model import IdIndex

    index = IdIndex.build(np.array(["b", "a", "ab", "c10"]), np.array(["u2", "u1"]))
    assert [index.item(i) for i in ("a", "b", "ab", "c10")] == [1, 0, 2, 3]
    assert index.item("c1") is None and index.item("c100") is None and index.item("") is None
    assert index.user("u1") == 1 and index.user("u3") is None


def _reference_row(
    served: ServedModel, history: list[HistoryEntry], user: str | None
) -> np.ndarray:
    """The model input spelled out: the user's training row plus the weighted recent events."""
    dense = np.zeros(served.n_items, dtype=np.float64)
    if user is not None and served.bundle.user_index(user) is not None:
        dense += served.bundle.training_history([user]).toarray()[0]
    for entry in history:
        col = served.index_of(entry.item_id)
        if col is not None:
            dense[col] += np.float32(HISTORY_WEIGHTS[entry.event_type])
    return dense.astype(np.float32)


@pytest.mark.parametrize(
    ("user", "recent"),
    [
        ("u1", []),  # the training row as it is
        ("u1", [("i3", "click"), ("i40", "view"), ("nope", "click"), ("i3", "view")]),
        ("nobody", [("i2", "click")]),
        (None, [("i5", "view"), ("i5", "view")]),
        ("u1", [("nope", "view")]),  # only unknown items: still the training row
    ],
)
def test_history_parts_add_recent_events_to_the_training_row(
    als_dir: Path, user: str | None, recent: list[tuple[str, str]]
) -> None:
    served = load_served_model(als_dir, "1")
    now = datetime.now(UTC)
    history = [HistoryEntry(i, t, now, f"e{n}") for n, (i, t) in enumerate(recent)]
    row = served.history_parts(history, user)
    dense = np.zeros(served.n_items, dtype=np.float32)
    dense[row.indices] = row.data
    assert list(row.indices) == sorted(set(row.indices.tolist()))  # sorted, distinct
    np.testing.assert_array_equal(dense, _reference_row(served, history, user))
    assert row.recent == tuple(
        dict.fromkeys(c for c in (served.index_of(i) for i, _ in recent) if c is not None)
    )


def test_history_parts_merge_a_training_row_that_is_not_sorted(als_dir: Path) -> None:
    served = load_served_model(als_dir, "1")
    assert served._trained is not None
    indptr, indices, data = served._trained
    row = served.bundle.user_index("u1")
    assert row is not None
    lo, hi = int(indptr[row]), int(indptr[row + 1])
    assert hi - lo >= 2
    shuffled = indices.copy()
    shuffled[lo:hi] = indices[lo:hi][::-1]
    values = data.copy()
    values[lo:hi] = data[lo:hi][::-1]
    served._trained = (indptr, shuffled, values)
    parts = served.history_parts([], "u1")
    assert parts.indices.tolist() == sorted(indices[lo:hi].tolist())
    np.testing.assert_array_equal(parts.data, data[lo:hi])


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_the_list_child_runs_in_idle_time_with_one_blas_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    import recloop.serving.model as served_model

    seen: dict[str, str] = {}
    real_run = subprocess.run

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        env = kwargs["env"]
        assert isinstance(env, dict)
        seen.update(env)
        return real_run(cmd, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(served_model.subprocess, "run", run)
    monkeypatch.setattr(served_model, "IN_PROCESS_LISTS_UP_TO", 0)
    load_served_model(fit_bundle(tmp_path / "b"), "1")
    assert seen["OPENBLAS_NUM_THREADS"] == "1"
    probe = "import os; from recloop.serving.model import run_in_idle_time as r; r(); " + (
        "print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    )
    done = real_run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
