"""The retrain loop on a real lake, registry and decision log (no HTTP): every decision it takes.

A small seeded world's two days of behaviour are ingested; impressions and clicks of the served
models are written through the ingest path with chosen click-through rates, so each test knows
what the loop must decide.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from recloop.events import Event, EventType
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.loop import GuardConfig, InProcessTrainer, LoopConfig, RetrainLoop, TrainSpec
from recloop.monitoring import MonitorConfig
from recloop.monitoring.decisions import Action, DecisionLog
from recloop.registry import ModelStatus, registry_from_uri
from recloop.registry.gate import GateConfig
from recloop.sim import World, WorldConfig

NOW = datetime.now(UTC).replace(microsecond=0)


def _config(**overrides: object) -> LoopConfig:
    monitor = MonitorConfig(
        current=timedelta(minutes=10),
        baseline=timedelta(minutes=30),
        attribution=timedelta(minutes=1),
        min_impressions=100,
        alpha=0.01,
        min_relative_drop=0.15,
        block=timedelta(minutes=1),
        restart=timedelta(minutes=10),
        seasonality=timedelta(minutes=30),
        harmonics=0,
        silence=timedelta(minutes=5),
        max_model_age=timedelta(days=30),
    )
    train = TrainSpec(
        families=("als",),
        search_budget=1,
        params={"factors": 8, "iterations": 6, "regularization": 0.2, "random_state": 0},
        window=timedelta(days=3),
        holdout=timedelta(hours=12),
        eval_users=500,
        test_types=("view", "click"),
    )
    guard = GuardConfig(
        window=timedelta(minutes=30),
        min_impressions=100,
        alpha=0.05,
        min_relative_loss=0.15,
    )
    config = LoopConfig(
        monitor,
        train,
        GateConfig(bootstrap_samples=200),
        guard,
        cooldown=timedelta(minutes=10),
        baseline_from_promotion=False,
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake with two days of a world's behaviour (ending 2 h ago), built once per module."""
    root = tmp_path_factory.mktemp("loop-template")
    world = World(
        WorldConfig(
            seed=3,
            start=NOW - timedelta(days=2, hours=2),
            n_users=250,
            n_items=150,
            n_visitors=0,
            n_bots=0,
            sessions_per_user_day=3.0,
            views_per_session=5.0,
            taste_weight=8.0,
        )
    )
    records = world.generate(world.start, NOW - timedelta(hours=2)).tracker_records()
    Ingestor(Lake.from_uri((root / "lake").as_uri())).ingest_events(records, "history")
    return root


@pytest.fixture
def site(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "site"
    shutil.copytree(template, root)
    return root


def _loop(root: Path, config: LoopConfig | None = None) -> RetrainLoop:
    return RetrainLoop(
        Lake.from_uri((root / "lake").as_uri()),
        registry_from_uri((root / "registry").as_uri()),
        DecisionLog((root / "decisions.jsonl").as_uri()),
        config or _config(),
        cache_dir=root / "cache",
    )


def _served(
    root: Path,
    version: str,
    start: datetime,
    end: datetime,
    n: int,
    ctr: float,
    seed: int,
) -> None:
    """`n` impressions of `version` spread over [start, end), a share `ctr` of them clicked."""
    rng = np.random.default_rng(seed)
    stamps = start + (end - start) * np.sort(rng.random(n))
    events = []
    for k, at in enumerate(stamps):
        rec = f"r{version}-{seed}-{k}"
        user = f"u{int(rng.integers(0, 250)):05d}"
        items = [f"i{int(i):05d}" for i in rng.choice(150, size=5, replace=False)]
        events.append(
            Event(
                event_id=f"imp-{rec}",
                event_type=EventType.IMPRESSION,
                timestamp=at,
                user_id=user,
                item_ids=items,
                rec_id=rec,
                model_version=version,
            )
        )
        if rng.random() < ctr:
            events.append(
                Event(
                    event_id=f"clk-{rec}",
                    event_type=EventType.CLICK,
                    timestamp=at + timedelta(seconds=5),
                    user_id=user,
                    item_id=items[0],
                    rec_id=rec,
                    model_version=version,
                )
            )
    Ingestor(Lake.from_uri((root / "lake").as_uri())).ingest_events(events, f"served-{seed}")


def test_the_first_pass_trains_a_first_model_that_must_beat_popularity(site: Path) -> None:
    loop = _loop(site)

    step = loop.step(NOW - timedelta(hours=2))

    assert step.actions() == ["retrain", "promote"]
    retrain, promote = step.decisions
    assert retrain.trigger == "no_champion"
    assert promote.evidence["incumbent"] == "popularity"
    assert promote.evidence["bootstrap"]["lower"] > 0
    champion = loop.registry.champion()
    assert champion is not None and champion.version == promote.model_version
    logged = DecisionLog((site / "decisions.jsonl").as_uri()).list()
    assert [d.action for d in logged] == [Action.RETRAIN, Action.PROMOTE]


def test_an_engagement_drop_triggers_a_retrain_gated_against_the_champion(site: Path) -> None:
    loop = _loop(site)
    loop.step(NOW - timedelta(hours=2))
    _served(site, "1", NOW - timedelta(minutes=50), NOW - timedelta(minutes=11), 500, 0.5, 1)
    _served(site, "1", NOW - timedelta(minutes=11), NOW - timedelta(minutes=1), 300, 0.2, 2)

    step = loop.step(NOW)

    actions = step.actions()
    assert actions[0] == "alarm" and step.decisions[0].trigger == "engagement_drop"
    drop = step.decisions[0].evidence["evidence"]
    assert drop["current"]["ctr"] < drop["baseline"]["ctr"]
    assert "retrain" in actions
    retrain = next(d for d in step.decisions if d.action is Action.RETRAIN)
    assert retrain.trigger == "engagement_drop" and retrain.previous_version == "1"
    verdict = step.decisions[-1]
    assert verdict.action in (Action.PROMOTE, Action.REJECT)
    # v1 was trained two hours ago, into this retrain's 12-hour holdout: compared by recipe.
    assert verdict.evidence["incumbent"] == "champion v1's recipe (als)"
    assert verdict.evidence["champion_scored_as"]["scored"] == "recipe"
    assert verdict.evidence["retrain_trigger"] == "engagement_drop"
    assert loop.registry.get(verdict.model_version or "").status in (
        ModelStatus.APPROVED,
        ModelStatus.REJECTED,
    )
    # The drop is still there a minute later, but a retrain ran moments ago: hold.
    again = loop.step(NOW + timedelta(minutes=1))
    if verdict.action is Action.REJECT:
        assert "hold" in again.actions()
        assert any("cooldown" in d.detail for d in again.decisions)


def _promoted_v2(site: Path, loop: RetrainLoop, at: datetime) -> None:
    """A second version approved by the loop at `at` over v1 (as a gated retrain would)."""
    options = loop.config.train.options(loop.config.gate, at)
    ended = InProcessTrainer(loop.lake, loop.registry).start("by-hand-2", options, {})
    assert ended.status == "Completed" and loop.registry.get("2").run_id == "by-hand-2"
    loop.registry.approve("2", "test: approved as the loop would", {})
    loop.decisions.record(
        Action.PROMOTE, "gate", model_version="2", previous_version="1", at=at, detail="test"
    )


def test_a_new_champion_that_loses_online_is_rolled_back_in_its_guard_window(
    site: Path,
) -> None:
    loop = _loop(site)
    loop.step(NOW - timedelta(hours=2))
    promoted = NOW - timedelta(minutes=25)
    _promoted_v2(site, loop, promoted)
    # Side by side since the approval: the held-back share on v1, the rest on v2.
    _served(site, "1", promoted, NOW - timedelta(minutes=1), 200, 0.5, 3)
    _served(site, "2", promoted, NOW - timedelta(minutes=1), 600, 0.2, 4)

    step = loop.step(NOW)

    assert step.actions() == ["rollback"]
    rollback = step.decisions[0]
    assert rollback.model_version == "2" and rollback.previous_version == "1"
    assert rollback.evidence["test"] == "msprt" and rollback.evidence["always_valid_p"] < 0.05
    assert rollback.evidence["champion"]["ctr"] < rollback.evidence["previous"]["ctr"]
    assert loop.registry.champion().version == "1"  # type: ignore[union-attr]
    assert loop.registry.get("2").status is ModelStatus.REJECTED
    # The guard is closed: the next pass monitors v1 again and decides nothing more about v2.
    assert "rollback" not in loop.step(NOW + timedelta(minutes=1)).actions()


def test_a_new_champion_that_holds_up_passes_its_guard_window(site: Path) -> None:
    loop = _loop(site)
    loop.step(NOW - timedelta(hours=2))
    promoted = NOW - timedelta(minutes=35)
    _promoted_v2(site, loop, promoted)
    _served(site, "1", promoted, NOW - timedelta(minutes=1), 150, 0.4, 5)
    _served(site, "2", promoted, NOW - timedelta(minutes=1), 500, 0.42, 6)

    step = loop.step(NOW)

    assert step.actions() == ["hold"]
    assert step.decisions[0].trigger == "guard_window"
    assert step.decisions[0].detail.startswith("guard passed")
    assert loop.registry.champion().version == "2"  # type: ignore[union-attr]


def test_the_guard_does_not_judge_before_against_after(site: Path) -> None:
    loop = _loop(site)
    loop.step(NOW - timedelta(hours=2))
    promoted = NOW - timedelta(minutes=35)
    _promoted_v2(site, loop, promoted)
    # v1 only before the approval (no held-back arm), v2 much lower after: time of day,
    # novelty and drift are mixed into that difference, so it is no evidence either way.
    _served(site, "1", promoted - timedelta(minutes=20), promoted, 400, 0.5, 7)
    _served(site, "2", promoted, NOW - timedelta(minutes=1), 400, 0.2, 8)

    step = loop.step(NOW)

    assert step.actions() == ["hold"]
    assert "without a verdict" in step.decisions[0].detail
    assert "HOLDBACK_SHARE" in step.decisions[0].detail
    assert loop.registry.champion().version == "2"  # type: ignore[union-attr]


def test_a_silent_stream_raises_its_alarm_and_holds_a_due_retrain(site: Path) -> None:
    loop = _loop(site)
    loop.step(NOW - timedelta(hours=2))
    monitor = MonitorConfig(silence=timedelta(minutes=5), max_model_age=timedelta(minutes=30))
    loop.config = _config(monitor=monitor)

    step = loop.step(NOW + timedelta(hours=1))  # the last event is three hours old

    alarms = {d.trigger for d in step.decisions if d.action is Action.ALARM}
    assert {"silent_stream", "stale_model"} <= alarms
    assert "retrain" not in step.actions()
    hold = step.decisions[-1]
    assert hold.action is Action.HOLD and "silent" in hold.detail


def test_loop_once_runs_one_pass_and_history_lists_its_decisions(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recloop.cli import app
    from recloop.config import get_settings

    monkeypatch.setenv("RECLOOP_LAKE_URI", (site / "lake").as_uri())
    monkeypatch.setenv("RECLOOP_REGISTRY_URI", (site / "registry").as_uri())
    monkeypatch.setenv("RECLOOP_MODEL_CACHE_DIR", str(site / "cache"))
    monkeypatch.setenv("RECLOOP_TRAIN_HOLDOUT_DAYS", "0.5")
    # The loop runs `recloop train`'s search: every family, one configuration each here.
    monkeypatch.setenv("RECLOOP_TRAIN_VALIDATION_DAYS", "0.5")
    monkeypatch.setenv("RECLOOP_TRAIN_SEARCH_BUDGET", "1")
    monkeypatch.setenv("RECLOOP_TRAIN_MIN_HOLDOUT_USERS", "20")  # a small world
    monkeypatch.setenv("RECLOOP_GATE_BOOTSTRAP_SAMPLES", "200")
    get_settings.cache_clear()

    once = CliRunner().invoke(app, ["loop", "--once", "--json"])
    history = CliRunner().invoke(app, ["loop", "history", "--json"])

    assert once.exit_code == 0, once.output
    step = json.loads(once.stdout.strip().splitlines()[-1])
    # Default settings: the gate decides on clicks alone; either verdict is a decision.
    assert step["actions"][0] == "retrain" and step["actions"][1] in ("promote", "reject")
    assert step["champion"] is None
    assert history.exit_code == 0, history.output
    payload = json.loads(history.stdout.strip().splitlines()[-1])
    assert [d["action"] for d in payload["decisions"]] == step["actions"]
    assert payload["log"].endswith("registry/decisions.jsonl")
    bad = CliRunner().invoke(app, ["loop", "history", "--action", "explode"])
    assert bad.exit_code == 2 and "unknown action" in bad.output


# ---- concurrency and redelivery: the guarantees the Lambdas rely on -----------------------------


class DeferredTrainer:
    """A trainer whose jobs run elsewhere, as SageMaker's do: `start` returns at once.

    The test runs the job itself (the real pipeline, via InProcessTrainer) when it chooses, then
    reports its end with `RetrainLoop.finish`, as the promote Lambda does.
    """

    kind = "deferred"
    lease_ttl = timedelta(hours=6)

    def __init__(self) -> None:
        self.started: list[tuple[str, object]] = []
        self._lock = threading.Lock()

    def job_name(self) -> str:
        return f"job-{uuid.uuid4().hex[:8]}"

    def start(self, job: str, options: object, context: dict[str, object]) -> None:
        with self._lock:
            self.started.append((job, options))


def _deferred_loop(root: Path, trainer: DeferredTrainer) -> RetrainLoop:
    return RetrainLoop(
        Lake.from_uri((root / "lake").as_uri()),
        registry_from_uri((root / "registry").as_uri()),
        DecisionLog((root / "decisions.jsonl").as_uri()),
        _config(cooldown=timedelta(0)),  # only the lease stands between two jobs
        cache_dir=root / "cache",
        trainer=trainer,
    )


def _run_job(loop: RetrainLoop, job: str, options: object) -> None:
    ended = InProcessTrainer(loop.lake, loop.registry).start(job, options, {})  # type: ignore[arg-type]
    assert ended.status == "Completed", ended.failure


def test_two_passes_at_once_start_one_training_job(site: Path) -> None:
    trainer = DeferredTrainer()
    loops = [_deferred_loop(site, trainer) for _ in range(4)]
    barrier = threading.Barrier(len(loops))

    def one_pass(loop: RetrainLoop) -> list[str]:
        barrier.wait()
        return loop.step(NOW - timedelta(hours=2)).actions()

    with ThreadPoolExecutor(len(loops)) as pool:
        results = list(pool.map(one_pass, loops))

    assert len(trainer.started) == 1, results
    logged = DecisionLog((site / "decisions.jsonl").as_uri()).list(actions=[Action.RETRAIN])
    assert len(logged) == 1 and logged[0].evidence["job"] == trainer.started[0][0]
    # A later pass while the job runs holds; it does not start a second job.
    later = loops[0].step(NOW - timedelta(hours=1))
    assert "retrain" not in later.actions() and len(trainer.started) == 1
    # ... and says so once per running job, however many passes see it.
    loops[1].step(NOW - timedelta(minutes=50))
    holds = DecisionLog((site / "decisions.jsonl").as_uri()).list(actions=[Action.HOLD])
    assert len(holds) == 1 and "still running" in holds[0].detail


def test_the_retrain_decision_is_recorded_before_the_job_starts(site: Path) -> None:
    log = DecisionLog((site / "decisions.jsonl").as_uri())
    seen: list[list[Action]] = []

    class Watching(DeferredTrainer):
        def start(self, job: str, options: object, context: dict[str, object]) -> None:
            seen.append([d.action for d in log.list()])
            super().start(job, options, context)

    _deferred_loop(site, Watching()).step(NOW - timedelta(hours=2))

    assert seen == [[Action.RETRAIN]]


def test_a_redelivered_event_changes_nothing(site: Path) -> None:
    trainer = DeferredTrainer()
    loop = _deferred_loop(site, trainer)
    log_file = site / "decisions.jsonl"

    first = loop.step(NOW - timedelta(hours=2), event_id="evt-1")
    after_first = log_file.read_bytes()
    again = loop.step(NOW - timedelta(hours=2), event_id="evt-1")

    assert first.actions() == ["retrain"] and again.actions() == [] and again.skipped
    assert log_file.read_bytes() == after_first and len(trainer.started) == 1
    job, options = trainer.started[0]
    _run_job(loop, job, options)
    verdict = loop.finish(job, "Completed")
    after_verdict = log_file.read_bytes()
    status = loop.registry.get("1").status

    assert [d.action for d in verdict] == [Action.PROMOTE]
    assert loop.finish(job, "Completed") == []  # the job-state-change event, delivered twice
    assert log_file.read_bytes() == after_verdict and loop.registry.get("1").status is status
    # The job's end gave the retrain lease back: the next due retrain may start.
    assert loop.retrain_lease.holder(NOW) is None


def test_a_job_finishing_after_a_newer_champion_is_gated_against_that_champion(
    site: Path,
) -> None:
    trainer = DeferredTrainer()
    loop = _deferred_loop(site, trainer)
    loop.step(NOW - timedelta(hours=2))
    first_job, options = trainer.started[0]
    _run_job(loop, first_job, options)
    loop.finish(first_job, "Completed")  # v1, the champion
    # A drop: the loop starts job A against v1 ...
    _served(site, "1", NOW - timedelta(minutes=50), NOW - timedelta(minutes=11), 500, 0.5, 1)
    _served(site, "1", NOW - timedelta(minutes=11), NOW - timedelta(minutes=1), 300, 0.2, 2)
    assert "retrain" in loop.step(NOW).actions()
    job_a, options_a = trainer.started[1]
    _run_job(loop, job_a, options_a)  # v2, gated (not applied) against v1 when it ran
    a = next(v for v in loop.registry.list() if v.run_id == job_a)
    assert a.status is ModelStatus.PENDING
    # ... and while it was running, someone approved another model: v3.
    _run_job(loop, "by-hand-3", options_a)
    loop.registry.approve("3", "approved by hand while job A ran", {})

    [verdict] = loop.finish(job_a, "Completed")

    assert verdict.model_version == a.version and verdict.previous_version == "3"
    assert verdict.evidence["champion_version"] == "3"
    assert verdict.evidence["incumbent"] == "champion v3's recipe (als)"
    # Identical data and configuration: A cannot beat v3 by the margin, so it is not approved.
    assert verdict.action is Action.REJECT
    assert loop.registry.champion().version == "3"  # type: ignore[union-attr]
