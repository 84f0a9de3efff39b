"""The interim `recloop demo`: a synthetic world's days through ingest into ./.recloop/lake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.config import get_settings
from recloop.lake import Lake

runner = CliRunner()


@pytest.fixture
def in_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with no RECLOOP_LAKE_URI: the demo's default lake."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECLOOP_LAKE_URI", raising=False)
    get_settings.cache_clear()
    return tmp_path


def test_demo_ingests_into_the_working_directory_and_reruns_idempotently(
    in_workdir: Path,
) -> None:
    args = ["demo", "--days", "2", "--users", "150", "--items", "80", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = orjson.loads(first.stdout.strip().splitlines()[-1])
    lake = Lake.from_uri((in_workdir / ".recloop" / "lake").as_uri())
    assert summary["lake_uri"] == lake.uri
    assert summary["ingest"]["written"] == summary["lake_rows"] == lake.summary().rows > 500
    assert summary["ingest"]["filtered"]["bot"] > 0
    assert 24 < summary["partitions"] <= 48  # hour partitions over two days
    assert summary["catalog"]["items"]["rows"] >= 80
    assert lake.read_catalog("users").num_rows == 150  # type: ignore[union-attr]
    again = orjson.loads(runner.invoke(app, args).stdout.strip().splitlines()[-1])
    assert again["ingest"]["written"] == 0
    assert again["ingest"]["duplicates"] == summary["ingest"]["written"]
    assert again["lake_rows"] == summary["lake_rows"]


def test_demo_with_logstash_weblogs_exercises_the_filters(in_workdir: Path) -> None:
    result = runner.invoke(
        app, ["demo", "--users", "100", "--items", "50", "--format", "logstash", "--json"]
    )
    assert result.exit_code == 0, result.output
    ingest = orjson.loads(result.stdout.strip().splitlines()[-1])["ingest"]
    assert {"bot", "static_asset", "non_2xx", "not_content"} <= set(ingest["filtered"])
    assert ingest["written"] + sum(ingest["filtered"].values()) == ingest["received"]


@pytest.mark.slow
def test_the_console_script_runs_the_default_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RECLOOP_LAKE_URI"}
    script = Path(sys.executable).with_name("recloop")
    done = subprocess.run(
        [str(script), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "events:" in done.stderr and "catalog items" in done.stderr
    assert Lake.from_uri((tmp_path / ".recloop" / "lake").as_uri()).summary().rows > 5000
