"""The closed-loop demo: a world, the real API on loopback, simulated users, a shift, recovery.

    result = run_demo(DemoConfig.quick(), root)   # ~40 s; DemoConfig() takes a few minutes

1. A seeded world; its first days of behaviour go through the ingest path into the lake, and
   the items into the feature store.
2. The loop's first pass finds no champion, trains one (it must beat popularity) and approves it.
3. The API starts (uvicorn on 127.0.0.1, a free port) and loads the champion.
4. Simulated users browse (POST /events) and ask for recommendations (GET /recommendations);
   they click by their latent tastes and post the clicks with the rec_id.
5. Tastes shift and new content arrives. The loop's passes see the engagement drop, retrain on
   the latest window, gate the challenger against the champion and approve it; serving
   hot-swaps; the guard window watches the new champion (with `sabotage`, the challenger has
   deliberately bad hyperparameters that pass the offline gate: the guard rolls it back).
6. Traffic stops: the silent-stream alarm fires. The dashboard is written.

Time is compressed: the world runs `speed` times faster than the wall clock (see Timeline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from recloop.config import Settings
from recloop.ingest import Ingestor
from recloop.lake import Lake
from recloop.loop.controller import LoopConfig, RetrainLoop
from recloop.loop.errors import LoopError
from recloop.loop.guard import GuardConfig
from recloop.loop.server import ApiServer
from recloop.loop.traffic import Timeline, TrafficDriver, TrafficStats, retimed_records
from recloop.loop.training import TrainSpec
from recloop.monitoring import ENGAGEMENT_DROP, SILENT_STREAM, Engagement, MonitorConfig
from recloop.monitoring.decisions import Action, Decision, DecisionLog
from recloop.monitoring.service_metrics import ServiceMetricsLog, SnapshotRecorder
from recloop.registry import ModelRegistry, registry_from_uri
from recloop.registry.gate import GateConfig
from recloop.sim import World, WorldConfig
from recloop.training.dataset import DatasetConfig

log = logging.getLogger(__name__)

DAY = 86_400.0


@dataclass(frozen=True)
class DemoConfig:
    """The world, the pace and the loop's knobs of one demo run (times in wall seconds)."""

    seed: int = 7
    n_users: int = 800
    n_items: int = 600
    history_days: float = 3.0  # world days ingested before the API starts
    speed: float = 3600.0  # world seconds per wall second: a world day is 24 s
    k: int = 10
    requests_per_second: float = 30.0
    max_ctr: float = 0.25  # the world's click curve (see WorldConfig)
    sessions_per_day: float = 2.0
    views_per_session: float = 5.0
    taste_weight: float = 8.0
    pre_shift: float = 20.0  # traffic on the first model before tastes shift
    shift_strength: float = 0.9
    new_items: int = 200
    budget: float = 300.0  # the whole run stops by then, done or not
    after_recovery: float = 150.0  # traffic once a retrained champion held up, then stop
    recovery_window: float = 60.0  # ctr_recovered: the last this many seconds (0: all since)
    loop_interval: float = 2.0
    current: float = 8.0  # the drop detector's current window
    baseline: float = 12.0
    attribution: float = 1.0
    min_impressions: int = 120
    alpha: float = 0.01
    min_relative_drop: float = 0.15
    silence: float = 8.0  # several sink flushes: a slow flush under load is not silence
    max_model_age: float = 48.0  # two world days: the stale-model detector retrains then
    guard_window: float = 12.0
    # Share of users the previous champion keeps serving in a guard window: half, on the
    # demo's clock, so that each arm has its minimum impressions within the window.
    holdback_share: float = 0.5
    cooldown: float = 8.0  # between two retrains
    retrain_window: float = 48.0  # wall seconds of data a retrain reads
    holdout: float = 12.0
    half_life: float = 8.0
    sabotage: bool = False
    # With --sabotage the shift is milder: the old champion stays a sound fallback, which is
    # when rolling a bad challenger back (rather than forward) is the right call.
    sabotage_shift_strength: float = 0.6
    family: str = "als"
    params: dict[str, Any] = field(
        default_factory=lambda: {"factors": 12, "regularization": 0.2, "iterations": 8}
    )
    sabotage_params: dict[str, Any] = field(
        default_factory=lambda: {"factors": 1, "regularization": 100.0, "iterations": 2}
    )

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """A short run for CI: smaller world, shorter phases (well under a minute)."""
        base = cls(
            n_users=500,
            n_items=400,
            history_days=2.0,
            pre_shift=8.0,
            current=6.0,
            baseline=8.0,
            min_impressions=90,
            # Both arms of the guard need their impressions within the window (half the users each).
            guard_window=12.0,
            silence=4.0,
            cooldown=4.0,
            retrain_window=48.0,
            after_recovery=2.0,
            recovery_window=0.0,
            max_model_age=24.0,
            budget=90.0,
        )
        return replace(base, **overrides)

    @classmethod
    def for_minutes(cls, minutes: float, **overrides: Any) -> DemoConfig:
        """A run of about `minutes`: the spare time goes to longer phases and more traffic."""
        pre_shift = min(20.0 * max(1.0, minutes / 2.0), 60.0)
        base = cls(
            pre_shift=pre_shift,
            # No scheduled retrain right at the shift: the drop should be what triggers one.
            max_model_age=max(48.0, pre_shift + 30.0),
            after_recovery=max(60.0, minutes * 60.0 - pre_shift - 90.0),
            budget=minutes * 60.0,
        )
        return replace(base, **overrides)

    def for_aws(self) -> DemoConfig:
        """The same story on the AWS wiring (`recloop demo --aws`): every step crosses a
        schedule, a poller, an API and a process, and a lake read is an S3 request, so the clock
        is compressed half as much (windows twice as long in wall time) and the first model's
        training job and the serving start get a minute of their own. At most 7 minutes of
        phases, and 90 s of traffic once a retrained champion held up."""
        scaled = self.scaled(2.0)
        return replace(
            scaled,
            budget=min(scaled.budget + 60.0, 420.0),
            after_recovery=min(scaled.after_recovery, 90.0),
            # The first model ages while serving starts (a minute): no stale-model retrain
            # before the shift's drop has had its chance.
            max_model_age=max(scaled.max_model_age, scaled.pre_shift + scaled.current + 90.0),
        )

    def scaled(self, factor: float) -> DemoConfig:
        """Every wall-clock length times `factor` (the world runs `factor` times slower)."""
        lengths = (
            "pre_shift", "budget", "after_recovery", "recovery_window", "current", "baseline",
            "attribution", "silence", "max_model_age", "guard_window", "cooldown",
            "retrain_window", "holdout", "half_life",
        )  # fmt: skip
        return replace(
            self,
            speed=self.speed / factor,
            **{name: getattr(self, name) * factor for name in lengths},
        )

    def monitor(self) -> MonitorConfig:
        return MonitorConfig(
            current=timedelta(seconds=self.current),
            baseline=timedelta(seconds=self.baseline),
            attribution=timedelta(seconds=self.attribution),
            min_impressions=self.min_impressions,
            alpha=self.alpha,
            min_relative_drop=self.min_relative_drop,
            # The drop detector on the demo's clock: one-second blocks, the reference just
            # before the span, no hour of day (a world day is 24 s), and on-call's budget of one
            # false alarm per 30 days counted in world days.
            block=timedelta(seconds=1),
            restart=timedelta(seconds=self.current),
            seasonality=timedelta(seconds=self.baseline),
            harmonics=0,
            false_alarms_per_30_days=self.speed,
            silence=timedelta(seconds=self.silence),
            max_model_age=timedelta(seconds=self.max_model_age),
            drift_min_events=200,
        )

    def train_spec(self, window: float, holdout: float, params: dict[str, Any]) -> TrainSpec:
        return TrainSpec(
            families=(self.family,),
            params={**params, "random_state": self.seed},
            search_budget=1,
            window=timedelta(seconds=window),
            holdout=timedelta(seconds=holdout),
            dataset=DatasetConfig(half_life_days=self.half_life / DAY),
            k=self.k,
            eval_users=2000,
            seed=self.seed,
            # Organic views count too: a small world's clicks alone leave the gate unsure.
            test_types=("view", "click"),
        )

    def loop_config(self) -> LoopConfig:
        monitor = self.monitor()
        guard = GuardConfig(
            window=timedelta(seconds=self.guard_window),
            min_impressions=self.min_impressions,
            # Rolling back to a model that served yesterday is cheap; keeping a bad one is not.
            alpha=0.05,
            min_relative_loss=self.min_relative_drop,
        )
        gate = GateConfig(metric=f"recall@{self.k}", margin=0.01, bootstrap_samples=300)
        spec = self.train_spec(self.retrain_window, self.holdout, self.params)
        return LoopConfig(
            monitor,
            spec,
            gate,
            guard,
            cooldown=timedelta(seconds=self.cooldown),
            # Users use up what they like best, so CTR decays slowly under any model: the
            # demo compares each window with the one just before it.
            baseline_from_promotion=False,
            incident_window=timedelta(seconds=self.current * 8),
        )


@dataclass
class DemoStatus:
    """What the live summary shows."""

    phase: str
    elapsed: float
    champion: str | None
    stats: TrafficStats
    decisions: list[Decision]
    recent_ctr: float = 0.0
    recent_lists: int = 0


@dataclass
class DemoResult:
    """The demo's outcome; `summary()` is the --json line."""

    drop_detected: bool
    drop_detected_after_s: float | None
    evidence_window_s: float
    retrains: int
    promotions: int
    rollbacks: int
    silent_stream_alarm: bool
    silent_stream_after_s: float | None  # from the traffic stop to the alarm
    silence_s: float  # the detector's window
    ctr_before_shift: float
    ctr_after_shift: float
    ctr_recovered: float
    impressions: dict[str, int]
    versions: list[str]
    seconds: float
    root: str
    dashboard: str | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    failed_requests: int = 0
    site: dict[str, Any] = field(default_factory=dict)

    @property
    def recovery_ratio(self) -> float:
        return self.ctr_recovered / self.ctr_before_shift if self.ctr_before_shift else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "drop_detected": self.drop_detected,
            "drop_detected_after_s": self.drop_detected_after_s,
            "evidence_window_s": self.evidence_window_s,
            "retrains": self.retrains,
            "promotions": self.promotions,
            "rollbacks": self.rollbacks,
            "silent_stream_alarm": self.silent_stream_alarm,
            "silent_stream_after_s": self.silent_stream_after_s,
            "silence_s": self.silence_s,
            "ctr_before_shift": round(self.ctr_before_shift, 4),
            "ctr_after_shift": round(self.ctr_after_shift, 4),
            "ctr_recovered": round(self.ctr_recovered, 4),
            "recovery_ratio": round(self.recovery_ratio, 4),
            "impressions": self.impressions,
            "versions": self.versions,
            "seconds": round(self.seconds, 1),
            "root": self.root,
            "dashboard": self.dashboard,
            "failed_requests": self.failed_requests,
            "rollback_evidence": [
                {k: d[k] for k in ("at", "model_version", "previous_version", "detail", "evidence")}
                for d in self.decisions
                if d["action"] == "rollback"
            ],
            **self.site,
        }


def demo_settings(root: Path, config: DemoConfig | None = None) -> Settings:
    """Embedded backends under `root`, the registry polled every half second."""
    guard = {}
    if config is not None:
        guard = {
            "guard_window_minutes": (config.guard_window + config.attribution) / 60.0,
            "guard_holdback_share": config.holdback_share,
        }
    return Settings(
        **guard,  # type: ignore[arg-type]
        lake_uri=(root / "lake").as_uri(),
        registry_uri=(root / "registry").as_uri(),
        features_uri="sqlite:///" + str(root / "features.db"),
        model_cache_dir=root / "serving-cache",
        watch_interval_seconds=0.5,
        backend_timeout_ms=1000,
        monitor_decision_log_uri=(root / "decisions.jsonl").as_uri(),
        monitor_service_metrics_uri=(root / "metrics" / "service.jsonl").as_uri(),
    )


def _item_features(
    world: World, timeline: Timeline, item_ids: list[str] | None = None
) -> list[Any]:
    from recloop.serving.features import ItemFeatures

    cats = world.config.categories
    wanted = item_ids or world.item_ids
    out = []
    for item in wanted:
        i = world.item_index(item)
        primary, secondary = int(world.item_primary[i]), int(world.item_secondary[i])
        published = datetime.fromtimestamp(int(world.publish_s[i]), UTC)
        out.append(
            ItemFeatures(
                item_id=item,
                title=world.titles[i],
                categories=(cats[primary],) if secondary < 0 else (cats[primary], cats[secondary]),
                available=True,
                published_at=timeline.wall(published),
            )
        )
    return out


class Site(Protocol):
    """Where the demo's loop runs: embedded backends here, AWS APIs in recloop.harness.site.

    The demo drives the world and the simulated users; the site ingests, runs the loop's
    passes, serves the API, and says what was decided.
    """

    lake: Lake
    registry: ModelRegistry
    decisions: DecisionLog
    features_uri: str
    service_metrics_uri: str
    headers: dict[str, str]  # what every request to the API carries (CloudFront's, on AWS)

    def ingest_history(self, records: list[dict[str, Any]], end: datetime) -> None:
        """The world's history (tracker records up to `end`) through the ingest path."""
        ...

    def step(self, now: datetime) -> list[Decision]:
        """One loop pass at `now`; every decision taken since the last call, oldest first."""
        ...

    def start_api(self) -> str:
        """Serve the champion; the API's base URL."""
        ...

    def stop_api(self) -> None: ...

    def close(self) -> None: ...

    def summary(self) -> dict[str, Any]:
        """What the site adds to the demo's --json outcome."""
        ...


class EmbeddedSite:
    """The loop in this process on file:// lake and registry, the API on loopback."""

    def __init__(self, config: DemoConfig, root: Path) -> None:
        self.config = config
        self.root = root
        self.settings = demo_settings(root, config)
        self.lake = Lake.from_uri(self.settings.lake_uri)
        self.registry: ModelRegistry = registry_from_uri(self.settings.registry_uri)
        self.decisions = DecisionLog.from_settings(self.settings)
        self.features_uri = self.settings.features_uri
        self.service_metrics_uri = self.settings.monitor_service_metrics_uri
        self.headers: dict[str, str] = {}
        self.loop: RetrainLoop | None = None
        self._server: ApiServer | None = None
        self._runtime: Any = None

    def ingest_history(self, records: list[dict[str, Any]], end: datetime) -> None:
        from recloop.serving.features import features_from_uri

        features = features_from_uri(self.features_uri, timeout_ms=1000)
        try:
            Ingestor(self.lake, self.settings, history_sink=features).ingest_events(
                records, batch_id="demo-history"
            )
        finally:
            features.close()
        cfg = self.config
        history_wall = cfg.history_days * DAY / cfg.speed
        self.loop = self._loop(history_wall)

    def _loop(self, history_wall: float) -> RetrainLoop:
        cfg = self.config
        spec = cfg.loop_config().train
        first = cfg.train_spec(history_wall, history_wall / cfg.history_days, cfg.params)

        def spec_for(number: int) -> TrainSpec:
            if number == 1:
                return first
            # Sabotaged challengers until one has been promoted and rolled back.
            if cfg.sabotage and not self.decisions.list(actions=[Action.ROLLBACK]):
                return replace(spec, params={**cfg.sabotage_params, "random_state": cfg.seed})
            return spec

        return RetrainLoop(
            self.lake,
            self.registry,
            self.decisions,
            cfg.loop_config(),
            cache_dir=self.root / "loop-cache",
            train_spec_for=spec_for,
        )

    def step(self, now: datetime) -> list[Decision]:
        assert self.loop is not None, "ingest_history first"
        return self.loop.step(now).decisions

    def start_api(self) -> str:
        from recloop.serving.app import create_app
        from recloop.serving.features import features_from_uri
        from recloop.serving.runtime import build_runtime
        from recloop.serving.sinks import LakeEventSink

        settings = self.settings
        features = features_from_uri(settings.features_uri, settings.backend_timeout_ms)
        ingestor = Ingestor(self.lake, settings, history_sink=features)
        # Batches of up to two seconds keep the lake's objects few; the default lingers 50 ms.
        sink = LakeEventSink(ingestor, max_queue=50_000, batch_size=20_000, linger_s=2.0)
        self._runtime = build_runtime(settings, features=features, sink=sink)
        self._server = ApiServer(create_app(settings, self._runtime)).start()
        return self._server.url

    def stop_api(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def close(self) -> None:
        self.stop_api()

    def summary(self) -> dict[str, Any]:
        return {"backend": "embedded"}


class Demo:
    """One run of the demo (see the module docstring); `run()` returns its DemoResult."""

    def __init__(
        self,
        config: DemoConfig,
        root: Path,
        on_status: Callable[[DemoStatus], None] | None = None,
        site: Site | None = None,
    ) -> None:
        self.config = config
        self.root = Path(root)
        self.on_status = on_status or (lambda status: None)
        self.site: Site = site if site is not None else EmbeddedSite(config, self.root)
        self.lake = self.site.lake
        self.registry = self.site.registry
        self.decisions = self.site.decisions
        self._metrics = ServiceMetricsLog(self.site.service_metrics_uri)
        self.phase = "setup"
        self.started = time.monotonic()
        self.stats = TrafficStats()
        self._seen: list[Decision] = []
        self._promoted_at: dict[str, datetime] = {}

    # ---- the run ----------------------------------------------------------------------------

    def run(self) -> DemoResult:
        try:
            return self._run()
        finally:
            self.site.close()

    def _run(self) -> DemoResult:
        cfg = self.config
        wall0 = datetime.now(UTC).replace(microsecond=0)
        timeline = Timeline(wall0, wall0, cfg.speed)
        world = World(
            WorldConfig(
                seed=cfg.seed,
                start=wall0 - timedelta(days=cfg.history_days),
                n_users=cfg.n_users,
                n_items=cfg.n_items,
                n_visitors=0,
                n_bots=0,
                max_ctr=cfg.max_ctr,
                sessions_per_user_day=cfg.sessions_per_day,
                views_per_session=cfg.views_per_session,
                taste_weight=cfg.taste_weight,
            )
        )
        from recloop.serving.features import features_from_uri

        features = features_from_uri(self.site.features_uri, timeout_ms=1000)
        try:
            features.upsert_items(_item_features(world, timeline))
        finally:
            features.close()
        self._status("ingesting history")
        history = retimed_records(world, world.start, wall0, timeline)
        self.site.ingest_history(history, wall0)
        self._status("training the first model")
        # The first pass is the one due when the history ends (a late delivery is still that
        # pass: "now" is the scheduled time).
        first = self.site.step(wall0)
        self._seen.extend(first)
        deadline = time.monotonic() + max(cfg.budget / 2, 60.0)
        while self.registry.champion() is None and time.monotonic() < deadline:
            time.sleep(1.0)  # a training job elsewhere: its end promotes the first model
            self._seen.extend(self.site.step(datetime.now(UTC)))
            self._status("training the first model")
        if self.registry.champion() is None:
            raise LoopError(f"the first model was not approved: {[d.detail for d in self._seen]}")
        return self._live(world, timeline)

    def _live(self, world: World, timeline: Timeline) -> DemoResult:
        cfg = self.config
        url = self.site.start_api()
        driver = TrafficDriver(
            world,
            url,
            timeline,
            requests_per_second=cfg.requests_per_second,
            k=cfg.k,
            seed=cfg.seed,
            recorder=SnapshotRecorder(instance="simulated-users"),
            headers=self.site.headers,
        )

        self.stats = driver.stats
        marks: dict[str, datetime] = {}
        try:
            marks["traffic"] = datetime.now(UTC)
            driver.start()
            self._run_phases(world, timeline, driver, marks)
        finally:
            driver.stop()
            marks["stopped"] = datetime.now(UTC)
            self.site.stop_api()
        self._status("waiting for the silent-stream alarm")
        silent = self._await_silence(marks["stopped"])
        result = self._result(marks, silent)
        result.site = self.site.summary()
        result.failed_requests = driver.stats.errors
        self._status("writing the dashboard")
        result.dashboard = self.write_dashboard(marks["traffic"], datetime.now(UTC))
        return result

    def write_dashboard(self, start: datetime, end: datetime) -> str | None:
        """The monitoring dashboard over the live phase, as root/dashboard.html."""
        from recloop.monitoring.dashboard import collect_dashboard, render_dashboard

        metrics = ServiceMetricsLog(self.site.service_metrics_uri)
        # Minutes of compressed time: buckets of seconds, not the default minutes.
        freq = "5s" if (end - start).total_seconds() < 150 else "10s"
        data = collect_dashboard(
            self.lake,
            metrics,
            self.decisions,
            start - timedelta(seconds=5),
            end,
            freq,
            None,
            "recloop demo",
            timedelta(seconds=self.config.attribution),
            min_bucket_impressions=5,
        )
        out = self.root / "dashboard.html"
        out.write_text(render_dashboard(data), encoding="utf-8")
        return str(out)

    def _run_phases(
        self,
        world: World,
        timeline: Timeline,
        driver: TrafficDriver,
        marks: dict[str, datetime],
    ) -> None:
        cfg = self.config
        deadline = self.started + cfg.budget - cfg.silence - 5
        self.phase = "serving the first model"
        next_step = time.monotonic() + cfg.loop_interval
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            elapsed_live = (now - marks["traffic"]).total_seconds()
            if "shift" not in marks and elapsed_live >= cfg.pre_shift:
                marks["shift"] = now
                self.phase = "tastes shifted, new content"

                def shift(world_now: datetime) -> None:
                    strength = cfg.sabotage_shift_strength if cfg.sabotage else cfg.shift_strength
                    world.shift_tastes(world_now, strength)
                    new = world.add_content(cfg.new_items, world_now)
                    self._publish(world, timeline, new)

                driver.at_next_tick(shift)
            if time.monotonic() >= next_step:
                decided = self.site.step(datetime.now(UTC))
                next_step = time.monotonic() + cfg.loop_interval
                self._after_step(decided, marks)
                self._snapshot(driver)
            recovered = marks.get("recovered")
            if recovered is not None and (now - recovered).total_seconds() >= cfg.after_recovery:
                return
            self._status(self.phase)
            time.sleep(0.2)

    def _snapshot(self, driver: TrafficDriver) -> None:
        """The simulated users' view of the API since the last pass, for the dashboard."""
        if driver.recorder is None:
            return
        _, _, version = driver.stats.recent_ctr(self.config.current)
        self._metrics.append(driver.recorder.flush(datetime.now(UTC), version))

    def _publish(self, world: World, timeline: Timeline, item_ids: list[str]) -> None:
        """New content reaches the feature store (the catalogue feed)."""
        from recloop.serving.features import features_from_uri

        store = features_from_uri(self.site.features_uri, timeout_ms=1000)
        try:
            store.upsert_items(_item_features(world, timeline, item_ids))
        finally:
            store.close()

    def _after_step(self, decided: list[Decision], marks: dict[str, datetime]) -> None:
        for decision in decided:
            self._seen.append(decision)
            if decision.action is Action.ALARM and decision.trigger == ENGAGEMENT_DROP:
                marks.setdefault("drop", decision.at)
                self.phase = "engagement dropped: retraining"
            elif decision.action is Action.PROMOTE:
                marks.setdefault("promoted", decision.at)
                self._promoted_at[decision.model_version or ""] = decision.at
                self.phase = f"v{decision.model_version} promoted: guard window"
            elif decision.action is Action.REJECT:
                self.phase = f"v{decision.model_version} rejected by the gate"
            elif decision.action is Action.ROLLBACK:
                marks.setdefault("rolled_back", decision.at)
                self.phase = (
                    f"v{decision.model_version} rolled back to v{decision.previous_version}"
                )
            elif decision.action is Action.HOLD and decision.trigger == "guard_window":
                if "shift" in marks and "recovered" not in marks:
                    # Recovery counts from the promotion of the first model that held up.
                    marks["recovered"] = decision.at
                    marks["recovering"] = self._promoted_at.get(
                        decision.model_version or "", decision.at
                    )
                self.phase = f"v{decision.model_version} passed its guard window"

    def _await_silence(self, stopped: datetime) -> float | None:
        """Seconds from the traffic stop to the silent-stream alarm (None: it never came)."""
        cfg = self.config
        deadline = time.monotonic() + cfg.silence * 3 + 5
        time.sleep(cfg.silence)
        while time.monotonic() < deadline:
            decided = self.site.step(datetime.now(UTC))
            self._seen.extend(decided)
            for d in decided:
                if d.action is Action.ALARM and d.trigger == SILENT_STREAM:
                    return (d.at - stopped).total_seconds()
            time.sleep(cfg.loop_interval)
        return None

    # ---- results ----------------------------------------------------------------------------

    def _result(self, marks: dict[str, datetime], silent: float | None) -> DemoResult:
        cfg = self.config
        start = marks["traffic"]
        end = marks["stopped"]
        engagement = Engagement.from_lake(
            self.lake, start, end + timedelta(seconds=1), timedelta(seconds=cfg.attribution)
        )
        all_decisions = self.decisions.list()
        promotions = [d for d in all_decisions if d.action is Action.PROMOTE]
        first_version = promotions[0].model_version if promotions else None
        shift = marks.get("shift", end)
        # Serving swaps a little after approval; the first seconds after a change are left out.
        settle = timedelta(seconds=2)
        before = engagement.counts(first_version, start + settle, shift)
        change = marks.get("promoted", end)
        after = engagement.counts(first_version, shift, change)
        # Recovery: every list shown since the first retrained champion that held up (the one
        # that passed its guard window) was promoted.
        since = marks.get("recovering", end) + settle
        if cfg.recovery_window > 0:
            since = max(since, end - timedelta(seconds=cfg.recovery_window))
        recovered = engagement.counts(None, min(since, end), end)
        drop = marks.get("drop")
        return DemoResult(
            drop_detected=drop is not None,
            drop_detected_after_s=round((drop - shift).total_seconds(), 2) if drop else None,
            evidence_window_s=cfg.current + cfg.attribution + cfg.loop_interval,
            retrains=sum(1 for d in all_decisions if d.action is Action.RETRAIN) - 1,
            promotions=len(promotions) - 1,
            rollbacks=sum(1 for d in all_decisions if d.action is Action.ROLLBACK),
            silent_stream_alarm=silent is not None,
            silent_stream_after_s=round(silent, 2) if silent is not None else None,
            silence_s=cfg.silence,
            ctr_before_shift=before.ctr,
            ctr_after_shift=after.ctr,
            ctr_recovered=recovered.ctr,
            impressions={v: engagement.counts(v).impressions for v in engagement.versions()},
            versions=[v.version for v in self.registry.list()],
            seconds=time.monotonic() - self.started,
            root=str(self.root),
            decisions=[d.to_dict() for d in all_decisions],
        )

    def _status(self, phase: str) -> None:
        ctr, lists, _ = self.stats.recent_ctr(self.config.current)
        champion = None
        try:
            found = self.registry.champion()
            champion = found.version if found else None
        except Exception:  # the live view must never stop the demo
            log.debug("champion lookup failed", exc_info=True)
        self.on_status(
            DemoStatus(
                phase=phase,
                elapsed=time.monotonic() - self.started,
                champion=champion,
                stats=self.stats,
                decisions=list(self._seen),
                recent_ctr=ctr,
                recent_lists=lists,
            )
        )


def run_demo(
    config: DemoConfig,
    root: Path,
    on_status: Callable[[DemoStatus], None] | None = None,
    site: Site | None = None,
) -> DemoResult:
    """Run the demo under `root` (a fresh folder) on `site` (default: embedded backends)."""
    return Demo(config, root, on_status, site).run()
