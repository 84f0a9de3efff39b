"""checkov: no failed check in any framework, and every skip carries its reason inline.

Two scans: terraform/ alone (the detailed report, with the skip bookkeeping), and the whole
repository with every framework checkov has (Terraform, Dockerfiles, the GitLab pipeline, the
secrets scan, JSON/YAML, ...). checkov lives in its own virtualenv (.venv/checkov, made by `make
test`/`make check-infra`) because its pins conflict with recloop's dependencies. The tests fail,
never skip, when it is missing: CI installs it, so absence means a broken setup.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tfparse import REPO, TERRAFORM
from tools import checkov


def _scan(directory: Path, *extra: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [
            checkov(),
            "--directory",
            str(directory),
            "--skip-download",  # no network: run only the checks shipped in the wheel
            "--output",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        # The default 10 s parse timeout turns a busy shared CI machine into parsing errors.
        env={**os.environ, "HCL_PARSE_TIMEOUT_SEC": "300"},
    )
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def _failures(report: dict[str, Any]) -> str:
    return "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    )


def _check_skips(report: dict[str, Any]) -> set[str]:
    applied = set()
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{skipped['check_id']} on {skipped['resource']}: {reason}"
        applied.add(skipped["check_id"])
    return applied


@pytest.mark.slow
def test_checkov_passes_on_terraform_with_only_justified_skips() -> None:
    (report,) = _scan(TERRAFORM, "--framework", "terraform")
    assert not report["results"]["failed_checks"], _failures(report)
    summary = report["summary"]
    assert summary["passed"] > 100, "checkov checked little: wrong directory or framework?"
    assert summary["parsing_errors"] == 0
    applied = _check_skips(report)
    # Every skip written in the code is one checkov applied: a mistyped or stale id would
    # silence nothing and hide that the check it meant still runs (or no longer exists).
    written = set(re.findall(r"#checkov:skip=(CKV2?_AWS_\d+):", _all_text("*.tf")))
    assert written <= applied, f"skips checkov did not apply: {sorted(written - applied)}"


@pytest.mark.slow
def test_checkov_passes_on_every_framework_including_the_secrets_scan() -> None:
    reports = _scan(REPO, "--framework", "all", "--skip-path", r"\.venv/", "--skip-path", r"\.git/")
    by_type = {r["check_type"]: r for r in reports}
    assert {"terraform", "dockerfile", "secrets", "gitlab_ci"} <= set(by_type), sorted(by_type)
    problems = [_failures(r) for r in reports if r["results"]["failed_checks"]]
    assert not problems, "\n".join(problems)
    applied: set[str] = set()
    for report in reports:
        assert report["summary"]["parsing_errors"] == 0, report["check_type"]
        applied |= _check_skips(report)
    written = set(re.findall(r"#checkov:skip=(CKV_(?:DOCKER|SECRET)_\d+):", _all_text("*")))
    assert written <= applied, f"skips checkov did not apply: {sorted(written - applied)}"


def _all_text(pattern: str) -> str:
    roots = [TERRAFORM, REPO / "docker"]
    return "\n".join(p.read_text() for root in roots for p in root.rglob(pattern) if p.is_file())
