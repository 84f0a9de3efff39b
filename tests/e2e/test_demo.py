"""`recloop demo --quick`: the whole loop over real HTTP on loopback, as CI runs it.

A seeded world, the real API (uvicorn on 127.0.0.1), simulated users, a taste shift: the
decisions the demo promises must happen. Seeded, but the users run in threads against a live
server, so the assertions are on decisions and directions, not on exact figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recloop.cli import app
from recloop.loop.demo import DemoConfig, run_demo
from recloop.monitoring.decisions import Action, DecisionLog
from recloop.registry import ModelStatus, registry_from_uri


@pytest.mark.slow
def test_the_quick_demo_detects_the_drop_retrains_promotes_and_recovers(tmp_path: Path) -> None:
    root = tmp_path / "demo"

    result = CliRunner().invoke(
        app, ["demo", "--quick", "--json", "--root", str(root)], catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    why = json.dumps(summary)
    assert summary["drop_detected"], why
    assert 0 <= summary["drop_detected_after_s"] <= summary["evidence_window_s"], why
    assert summary["retrains"] >= 1 and summary["promotions"] >= 1, why
    assert summary["silent_stream_alarm"], why
    # The last event is up to one sink flush (2 s) before the stop; a pass runs every 2 s.
    assert summary["silent_stream_after_s"] <= summary["silence_s"] + 2 * 2.0 + 1.0, why
    assert summary["ctr_after_shift"] < summary["ctr_before_shift"], why
    assert summary["ctr_recovered"] > summary["ctr_after_shift"], why
    assert summary["seconds"] < 120, why
    # Every promotion is in the decision log with the gate's evidence, and serving used it.
    log = DecisionLog((root / "decisions.jsonl").as_uri())
    promotions = log.list(actions=[Action.PROMOTE])
    assert len(promotions) == summary["promotions"] + 1  # + the first model
    assert all(p.evidence["bootstrap"]["lower"] > 0 for p in promotions)
    assert set(summary["impressions"]) >= {p.model_version for p in promotions[:2]}
    page = Path(summary["dashboard"]).read_text()
    assert "recloop demo" in page


@pytest.mark.slow
def test_a_sabotaged_challenger_is_rolled_back_in_its_guard_window(tmp_path: Path) -> None:
    result = run_demo(DemoConfig.quick(sabotage=True), tmp_path / "demo")

    assert result.rollbacks >= 1, result.summary()
    registry = registry_from_uri((tmp_path / "demo" / "registry").as_uri())
    rollback = DecisionLog((tmp_path / "demo" / "decisions.jsonl").as_uri()).list(
        actions=[Action.ROLLBACK]
    )[0]
    # The sabotaged model had passed the offline gate, then lost online and was rejected.
    assert registry.get(rollback.model_version or "").status is ModelStatus.REJECTED
    assert rollback.evidence["champion"]["ctr"] < rollback.evidence["previous"]["ctr"]
    # Side by side: the held-back share stayed on the previous champion during the window.
    assert rollback.evidence["test"] == "msprt" and rollback.evidence["always_valid_p"] < 0.05
    assert rollback.evidence["previous"]["impressions"] >= 90
    champion = registry.champion()
    assert champion is not None and champion.version != rollback.model_version


def test_contradictory_or_unsafe_demo_options_are_refused(tmp_path: Path) -> None:
    both = CliRunner().invoke(app, ["demo", "--quick", "--minutes", "3"])
    short = CliRunner().invoke(app, ["demo", "--minutes", "1"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    busy = CliRunner().invoke(app, ["demo", "--quick", "--root", str(tmp_path / "busy")])

    assert (both.exit_code, short.exit_code, busy.exit_code) == (2, 2, 2)
    assert "exclude each other" in both.output
    assert "at least 2 minutes" in short.output
    assert "not empty" in busy.output
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("given", [None, "relative-root"])
def test_the_demo_folder_is_absolute_whether_defaulted_or_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None
) -> None:
    import recloop.cli.demo as demo_cli

    seen: list[Path] = []

    def fake_run_demo(config: DemoConfig, root: Path, on_status: object, aws: bool) -> None:
        seen.append(root)
        raise SystemExit(0)  # stop before any work: only the folder is under test

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_cli, "run_demo", fake_run_demo)
    args = ["demo", "--quick"] + (["--root", given] if given else [])
    CliRunner().invoke(app, args)
    [root] = seen
    assert root.is_absolute() and root.is_relative_to(tmp_path)
    # The demo quiets the library's logging only while it runs.
    assert logging.getLogger("recloop").level == logging.NOTSET
