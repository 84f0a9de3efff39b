"""Where the infra checks' tools live: checkov's own virtualenv (.venv/checkov)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tfparse import REPO


def checkov_venv() -> Path:
    """checkov's virtualenv; its pins conflict with recloop's, so it is separate (Makefile)."""
    return REPO / ".venv" / "checkov"


def checkov() -> str:
    """The checkov executable: RECLOOP_CHECKOV, .venv/checkov, or one on PATH."""
    configured = os.environ.get("RECLOOP_CHECKOV")
    local = checkov_venv() / "bin" / "checkov"
    found = configured or (str(local) if local.exists() else shutil.which("checkov"))
    # Fail, never skip: CI installs it, so absence means a broken setup.
    assert found, "checkov is missing: run `make check-infra` (it builds .venv/checkov)"
    return found


def checkov_python() -> str:
    """The interpreter next to checkov (it carries policy_sentry too)."""
    python = Path(checkov()).with_name("python")
    assert python.exists(), f"no interpreter beside {checkov()}"
    return str(python)
