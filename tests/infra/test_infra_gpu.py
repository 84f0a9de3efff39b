"""The GPU training image's Python environment loads implicit's CUDA extension.

No Docker engine and no GPU here. `make check-infra` builds the image's GPU environment as a
virtualenv (.venv/gpu) from the same docker/requirements-gpu.txt, and these tests load
implicit's extension in a clean process with the image's LD_LIBRARY_PATH (read from the
Dockerfile, /opt/venv mapped to .venv/gpu): every library `_cuda.so` links must resolve from the
venv's wheels, and the extension must import. `implicit.gpu.HAS_CUDA` then also needs the NVIDIA
driver (libcuda.so.1), which only a GPU host has: without one, the only failure left must be
the driver's ("CUDA driver version is insufficient"); with one, HAS_CUDA must be true.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from tfparse import REPO

GPU_VENV = REPO / ".venv" / "gpu"
DOCKERFILE = REPO / "docker" / "training.Dockerfile"
CUDA_LIBS = {"libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudart.so.13"}
RAPIDS_LIBS = {"librmm.so", "librapids_logger.so"}

_PROBE = r"""
import json, re, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import implicit.gpu as gpu
extension = None
try:
    import implicit.gpu._cuda as extension
except Exception as exc:
    extension_error = f"{type(exc).__name__}: {exc}"
else:
    extension_error = None
maps = {}
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    name = path.rsplit("/", 1)[-1]
    if re.match(r"lib(cu|rmm|rapids)", name):
        maps[name] = path
print(json.dumps({
    "has_rmm": gpu.HAS_RMM,
    "has_cuda": gpu.HAS_CUDA,
    "extension": extension.__file__ if extension else None,
    "extension_error": extension_error,
    "warnings": [str(w.message) for w in caught],
    "loaded": maps,
}))
"""


def _python() -> Path:
    python = GPU_VENV / "bin" / "python"
    # Fail, never skip: `make check-infra` and `make test` build it; absence is a broken setup.
    assert python.exists(), "the GPU environment is missing: run `make check-infra` (.venv/gpu)"
    return python


def _image_library_path() -> str:
    """The training image's LD_LIBRARY_PATH, with its /opt/venv mapped to .venv/gpu."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    match = re.search(r"LD_LIBRARY_PATH=(\S+)", text)
    assert match, "the training image sets no LD_LIBRARY_PATH for the NVIDIA wheels"
    image_python = re.search(r"ARG PYTHON_IMAGE=python:(\d+\.\d+)", text)
    assert image_python, "the training image's Python version is not pinned"
    venv_version = next((GPU_VENV / "lib").glob("python*")).name
    assert venv_version == f"python{image_python.group(1)}", (venv_version, image_python)
    return match.group(1).replace("/opt/venv", str(GPU_VENV))


def _probe(library_path: str | None) -> dict[str, object]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if library_path is not None:
        env["LD_LIBRARY_PATH"] = library_path
    result = subprocess.run(
        [str(_python()), "-c", _PROBE],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return probed


def _has_driver() -> bool:
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version"))


@pytest.mark.slow
def test_the_gpu_image_environment_loads_implicits_cuda_extension() -> None:
    probed = _probe(_image_library_path())
    assert probed["has_rmm"] is True, probed
    assert probed["extension"], probed["extension_error"] or probed["warnings"]
    loaded = probed["loaded"]
    assert isinstance(loaded, dict)
    missing = (CUDA_LIBS | RAPIDS_LIBS) - set(loaded)
    assert not missing, f"not loaded: {sorted(missing)}"
    for name in CUDA_LIBS | RAPIDS_LIBS:
        # From the venv's wheels, never from a CUDA toolkit that happens to be on the machine.
        assert str(loaded[name]).startswith(str(GPU_VENV.resolve())), (name, loaded[name])
    if _has_driver():
        assert probed["has_cuda"] is True, probed["warnings"]
    else:
        assert probed["has_cuda"] is False
        assert any("driver" in str(w) for w in probed["warnings"]), probed["warnings"]  # type: ignore[union-attr]


@pytest.mark.slow
def test_without_the_image_library_path_the_extension_does_not_load() -> None:
    """What the image did before: RMM imports, the extension cannot find cuBLAS, and implicit
    quietly falls back to the CPU. The check above would fail on it."""
    probed = _probe(None)
    assert probed["has_rmm"] is True
    assert probed["has_cuda"] is False
    assert probed["extension"] is None
    assert "libcublas" in str(probed["extension_error"]) + " ".join(probed["warnings"])  # type: ignore[arg-type]


def test_every_library_the_extension_links_is_pinned() -> None:
    pins = (REPO / "docker" / "requirements-gpu.txt").read_text()
    for package in ("nvidia-cublas==13.", "nvidia-curand==10.", "nvidia-cuda-runtime==13."):
        assert package in pins, package
    assert "implicit==" in pins  # the extension inspected is this implicit's
