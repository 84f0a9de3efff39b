"""`recloop demo --aws --quick`: the production wiring as one system, on AWS APIs on loopback.

moto's server on 127.0.0.1; the deployed Lambda handlers in processes of their own with
Terraform's environment; weblogs through a Kinesis stream and the event source mapping; the
monitor on scheduled events; SageMaker training jobs run by the harness's runner with the
training image's entrypoint; the promote handler on the jobs' state change events (each
delivered twice); the registry as a SageMaker model package group; `recloop serve` with two
workers reading sagemaker:// and writing impressions to Kinesis. What is asserted is what the
loop must do, not exact figures: the users run in threads against live servers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recloop.cli import app


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 3 minutes on 2 busy cores; the suite's default is 5
def test_the_quick_aws_demo_closes_the_loop_on_the_production_wiring(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    result = CliRunner().invoke(
        app, ["demo", "--aws", "--quick", "--json", "--root", str(root)], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    why = json.dumps({k: v for k, v in summary.items() if k != "training_jobs"})
    assert summary["backend"] == "aws", why
    assert summary["drop_detected"] and summary["retrains"] >= 1, why
    assert summary["failed_requests"] == 0, why
    jobs = summary["training_jobs"]
    # Every retrain was a training job; every job registered one model package version.
    assert len(jobs) == summary["retrains"] + 1 and len(summary["versions"]) == len(jobs), why
    assert all(job["status"] == "Completed" for job in jobs), jobs
    # EventBridge delivered each job's end twice: the second delivery changed nothing.
    first, again = zip(*(job["promote_results"] for job in jobs), strict=True)
    assert first[0]["action"] == "promote", jobs  # the first model
    assert all(r["action"] in ("promote", "reject") for r in first), jobs
    assert all(r["action"] is None for r in again), jobs
    calls = summary["lambda_invocations"]
    assert calls["promote"] == 2 * len(jobs) and calls["monitor"] > 10, why
    assert calls["weblog_processor"] > 0 and summary["lambda_errors"]["weblog_processor"] == 0
    stream = summary["weblog_stream"]
    assert stream["given_up"] == 0 and stream["records"] > 0, why
    # Serving swapped to a retrained champion: its impressions reached the lake via Kinesis.
    assert len(summary["impressions"]) >= 2, why
    assert summary["silent_stream_alarm"], why
    assert (root / "logs" / "monitor.log").is_file()
