"""Every Lambda handler Terraform references exists and imports.

Each aws_lambda_function carries a `recloop:source` tag naming its folder under lambdas/ and an
image_config command `<module>.<function>` (handler.handler, handler.lambda_handler); the Lambda
image copies that folder into the task root (docker/lambda.Dockerfile), so the command resolves
to <folder>/<module>.py:<function>. Each import
runs in a fresh interpreter with the folder on sys.path, as the Lambda runtime does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_infra_terraform import tfparse_lambda_sources
from tfparse import REPO


def _params() -> list[object]:
    return [
        pytest.param(source, command, id=source)
        for source, command in sorted(tfparse_lambda_sources().items())
    ]


def _import_error(source: str, command: str, cwd: Path) -> str:
    """Why <source>/<module>.py:<function> does not import as a callable ('' when it does)."""
    module, _, function = command.rpartition(".")
    folder = REPO / source
    if not (folder / f"{module}.py").is_file():
        return f"{source}/{module}.py does not exist"
    probe = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
        "handler = getattr(importlib.import_module(sys.argv[2]), sys.argv[3]); "
        "assert callable(handler), 'not callable'"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(folder), module, function],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
    )
    return "" if result.returncode == 0 else result.stderr[-2000:]


@pytest.mark.parametrize(("source", "command"), _params())
def test_handler_exists_and_imports(source: str, command: str, tmp_path: Path) -> None:
    problem = _import_error(source, command, tmp_path)
    assert not problem, problem
