"""ModelBundle: save/load round trip, verification, id lookups, histories, cold start."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recloop.training.bundle import ModelBundle, read_meta
from recloop.training.models.base import ModelError
from training_fixtures import make_bundle, register_test_family


@pytest.fixture(autouse=True)
def _test_family(monkeypatch: pytest.MonkeyPatch) -> None:
    register_test_family(monkeypatch)


def test_round_trip_keeps_model_ids_popularity_history_and_meta(tmp_path: Path) -> None:
    bundle = make_bundle(metrics={"recall@10": 0.25})
    folder = bundle.save(tmp_path / "b")
    loaded = ModelBundle.load(folder)
    assert loaded.item_ids.tolist() == bundle.item_ids.tolist()
    assert loaded.user_ids.tolist() == bundle.user_ids.tolist()
    np.testing.assert_array_equal(loaded.item_popularity, bundle.item_popularity)
    assert loaded.history is not None and bundle.history is not None
    assert (loaded.history != bundle.history).nnz == 0
    assert loaded.meta.metrics == {"recall@10": 0.25}
    assert loaded.meta.family == "test_cooccurrence"
    rows = bundle.history_rows([["i1", "i2"], ["i15"]])
    np.testing.assert_allclose(
        loaded.model.score(loaded.model.user_vectors(rows)),
        bundle.model.score(bundle.model.user_vectors(rows)),
    )
    assert read_meta(folder)["n_items"] == 20


def test_ids_are_stored_as_unicode_arrays_loadable_without_pickle(tmp_path: Path) -> None:
    folder = make_bundle().save(tmp_path / "b")
    ids = np.load(folder / "item_ids.npy", allow_pickle=False)
    assert ids.dtype.kind == "U"


@pytest.mark.parametrize("victim", ["item_ids.npy", "history_data.npy", "model/sim.npy"])
def test_a_corrupted_array_is_refused(tmp_path: Path, victim: str) -> None:
    folder = make_bundle().save(tmp_path / "b")
    path = folder / victim
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        ModelBundle.load(folder)
    ModelBundle.load(folder, verify=False)  # the caller may opt out


def test_a_missing_file_or_shape_mismatch_is_a_model_error(tmp_path: Path) -> None:
    folder = make_bundle().save(tmp_path / "b")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["files"]["item_ids"]["shape"] = [21]
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="shape"):
        ModelBundle.load(folder, verify=False)
    (folder / "user_ids.npy").unlink()
    with pytest.raises(ModelError):
        ModelBundle.load(folder)
    with pytest.raises(ModelError):
        ModelBundle.load(tmp_path / "nowhere")


def test_save_refuses_to_overwrite_a_bundle(tmp_path: Path) -> None:
    make_bundle().save(tmp_path / "b")
    with pytest.raises(ModelError, match="already"):
        make_bundle().save(tmp_path / "b")


def test_inconsistent_parts_are_refused() -> None:
    bundle = make_bundle()
    with pytest.raises(ModelError, match="item ids"):
        ModelBundle(
            bundle.model,
            bundle.item_ids[:-1],
            bundle.user_ids,
            bundle.item_popularity[:-1],
            bundle.meta,
        )


def test_lookups_and_history_rows_ignore_unknown_items() -> None:
    bundle = make_bundle()
    assert bundle.item_index("i3") == 3
    assert bundle.item_index("nope") is None
    assert bundle.user_index("u7") == 7
    row = bundle.history_row(["i3", "nope", "i3", "i5"], weights=[1.0, 9.0, 2.0, 1.0])
    assert row.shape == (1, 20)
    assert row[0, 3] == pytest.approx(3.0)  # repeats add up
    assert row[0, 5] == pytest.approx(1.0)
    assert row.nnz == 2


def test_training_history_gives_known_rows_and_empty_rows_for_strangers() -> None:
    bundle = make_bundle()
    rows = bundle.training_history(["u2", "stranger", "u30"])
    assert bundle.history is not None
    assert (rows[0] != bundle.history[2]).nnz == 0
    assert rows[1].nnz == 0
    assert (rows[2] != bundle.history[30]).nnz == 0


def test_recommend_uses_taste_excludes_seen_and_falls_back_to_popularity() -> None:
    bundle = make_bundle()
    histories = bundle.history_rows([["i0", "i1"], []])
    recs = bundle.recommend(histories, k=3)
    first = [item for item, _ in recs[0]]
    assert "i0" not in first and "i1" not in first
    assert all(int(item[1:]) < 10 for item in first)  # the user's taste group
    assert [item for item, _ in recs[1]] == [item for item, _ in bundle.popular(3)]


def test_popular_skips_excluded_items() -> None:
    bundle = make_bundle()
    top = [item for item, _ in bundle.popular(3)]
    rest = [item for item, _ in bundle.popular(3, exclude=[top[0]])]
    assert top[0] not in rest and rest[:2] == top[1:]


def test_holdout_evidence_round_trips_checksummed_and_restores_the_evaluation(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    import scipy.sparse as sp

    from recloop.training.bundle import HoldoutEvidence
    from recloop.training.evaluation import evaluate

    bundle = make_bundle()
    assert bundle.history is not None
    test = sp.csr_matrix(bundle.history[:, ::-1])  # any test rows of the same shape
    result = evaluate(bundle.model, bundle.history, test, k=5, baseline=True)
    evidence = HoldoutEvidence.from_result(result, bundle.user_ids, "2026-02-01", "2026-02-08")
    folder = replace(bundle, holdout=evidence).save(tmp_path / "b")

    loaded = ModelBundle.load(folder).holdout
    assert loaded is not None and loaded.start == "2026-02-01" and loaded.k == 5
    assert loaded.user_ids.tolist() == bundle.user_ids[result.users].tolist()
    # Rows of the same users in other data: the metrics and per-user vectors come back whole.
    rows = np.arange(len(loaded.user_ids)) + 3
    again = loaded.result(rows)
    assert again.metrics == result.metrics
    assert again.baseline is not None and result.baseline is not None
    assert again.baseline.metrics == result.baseline.metrics
    np.testing.assert_array_equal(again.per_user["ndcg@5"], result.per_user["ndcg@5"])
    np.testing.assert_array_equal(again.users, rows)
    assert (
        make_bundle().save(tmp_path / "plain")
        and ModelBundle.load(tmp_path / "plain").holdout is None
    )

    path = folder / "holdout_values.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"holdout_values\.npy"):
        ModelBundle.load(folder)
