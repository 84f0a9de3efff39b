"""checkov on terraform/: no failed check, and every skip carries its reason inline.

checkov lives in its own virtualenv (.venv/checkov, made by `make test`/`make check-infra`)
because its pins conflict with recloop's dependencies. The test fails, never skips, when it is
missing: CI installs it, so absence means a broken setup.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tfparse import REPO, TERRAFORM


def _checkov() -> str:
    configured = os.environ.get("RECLOOP_CHECKOV")
    local = REPO / ".venv" / "checkov" / "bin" / "checkov"
    found = configured or (str(local) if local.exists() else shutil.which("checkov"))
    assert found, "checkov is missing: run `make check-infra` (it builds .venv/checkov)"
    return found


def _scan(directory: Path) -> dict[str, object]:
    result = subprocess.run(
        [
            _checkov(),
            "--directory",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",  # no network: run only the checks shipped in the wheel
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report  # type: ignore[no-any-return]


@pytest.mark.slow
def test_checkov_passes_on_terraform_with_only_justified_skips() -> None:
    report = _scan(TERRAFORM)
    results = report["results"]
    assert isinstance(results, dict)
    failed = results["failed_checks"]
    assert not failed, "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in failed
    )
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["passed"] > 100, "checkov checked little: wrong directory or framework?"
    assert summary["parsing_errors"] == 0
    applied = set()
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{skipped['check_id']} on {skipped['resource']}"
        applied.add(skipped["check_id"])
    # Every skip written in the code is one checkov applied: a mistyped or stale id would
    # silence nothing and hide that the check it meant still runs (or no longer exists).
    written = set(re.findall(r"#checkov:skip=([A-Z0-9_]+):", _all_tf_text()))
    assert written <= applied, f"skips checkov did not apply: {sorted(written - applied)}"


def _all_tf_text() -> str:
    return "\n".join(p.read_text() for p in TERRAFORM.rglob("*.tf"))
