"""ServedModel: the ALS fold-in accelerator, publish-time lists, verification before serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recloop.serving.model import LISTS_DIR, ALSFoldIn, load_served_model
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
