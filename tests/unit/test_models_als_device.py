"""Where ALS fits: "auto" picks the GPU only when implicit has CUDA and a device is present.

There is no GPU here: the CPU path is fitted for real; the choice is tested by setting
implicit.gpu's own flags (HAS_CUDA, get_device_count) the way a CUDA build reports them.
"""

from __future__ import annotations

from pathlib import Path

import implicit.gpu
import numpy as np
import pytest
import scipy.sparse as sp

from recloop.training.models import ModelError, make
from recloop.training.models import als as als_module
from recloop.training.models.base import Recommender


def _data() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 30)) < 0.2).astype(np.float32)
    return sp.csr_matrix(dense)


def _cuda(monkeypatch: pytest.MonkeyPatch, has_cuda: bool, devices: int | None) -> None:
    monkeypatch.setattr(implicit.gpu, "HAS_CUDA", has_cuda)
    if devices is None:  # a build without the CUDA extension has no get_device_count

        def refuse() -> int:
            raise RuntimeError("no CUDA-capable device is detected")

        monkeypatch.setattr(implicit.gpu, "get_device_count", refuse, raising=False)
    else:
        monkeypatch.setattr(implicit.gpu, "get_device_count", lambda: devices, raising=False)


def test_auto_uses_the_gpu_only_with_cuda_and_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _cuda(monkeypatch, has_cuda=False, devices=1)
    assert als_module.use_gpu("auto") is False
    _cuda(monkeypatch, has_cuda=True, devices=0)
    assert als_module.use_gpu("auto") is False
    _cuda(monkeypatch, has_cuda=True, devices=None)
    assert als_module.use_gpu("auto") is False
    _cuda(monkeypatch, has_cuda=True, devices=1)
    assert als_module.use_gpu("auto") is True
    assert als_module.use_gpu("AUTO") is True
    assert als_module.use_gpu(False) is False  # asked for the CPU: the GPU is not used


def test_demanding_the_gpu_without_one_or_a_bad_value_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _cuda(monkeypatch, has_cuda=False, devices=0)
    with pytest.raises(ModelError, match="no CUDA"):
        make("als", use_gpu=True).fit(_data())
    with pytest.raises(ModelError, match="use_gpu must be"):
        make("als", use_gpu="sometimes").fit(_data())
    _cuda(monkeypatch, has_cuda=True, devices=1)
    assert als_module.use_gpu("true") is True


def test_auto_without_a_gpu_fits_on_the_cpu_like_use_gpu_false(tmp_path: Path) -> None:
    params = {"factors": 4, "iterations": 3, "random_state": 1}
    auto = make("als", **params).fit(_data())
    cpu = make("als", use_gpu=False, **params).fit(_data())
    assert auto.params["use_gpu"] == "auto"
    assert getattr(auto, "device", None) == "cpu"
    vectors = auto.item_vectors()
    assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
    assert np.array_equal(vectors, cpu.item_vectors())
    loaded = Recommender.load(auto.save(tmp_path / "als"))
    assert np.array_equal(np.asarray(loaded.item_vectors()), vectors)


def test_factors_are_copied_to_numpy_before_they_are_kept() -> None:
    class DeviceMatrix:  # the one method implicit.gpu.Matrix offers to leave the device
        def __init__(self, data: np.ndarray) -> None:
            self.data = data

        def to_numpy(self) -> np.ndarray:
            return self.data.copy()

    on_device = DeviceMatrix(np.arange(6, dtype=np.float64).reshape(3, 2))
    out = als_module.to_numpy(on_device)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (3, 2)
    assert out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, on_device.data)
