"""`recloop train`: a lake window in, a registered (and gated) model bundle out, with a run record.

    window      [since, until): until defaults to the end of the newest lake partition
                holdout    = [until - holdout_days, until)            (the gate's data)
                validation = [holdout start - validation_days, holdout start)  (the search's)
    search      per family, a few seeded configurations fitted before the validation window
                and scored on its organic clicks (as the holdout, `evaluation_split`); the
                best configuration of the best family wins
    holdout     the winner refitted on everything before the holdout and scored on the
                holdout's organic clicks (no rec_id), popularity beside; the champion is
                scored on the same users as it serves (with its bundle's training rows) when
                its training ended before the holdout; trained into it, its artifact has seen
                the holdout, so its recipe (family, params) is refitted before the holdout
                and scored instead: no artifact is ever scored on data it was fitted on
    refit       the winner refitted on the whole window (holdout included), so the model that
                serves has seen the latest behaviour
    register    bundle -> registry (PendingManualApproval) -> gate -> Approved or Rejected

Every stage is timed into the run record; the run's config is enough to reproduce it
(`reproduce`), reading exactly the lake objects the run read.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recloop.config import local_root
from recloop.errors import RecloopError
from recloop.lake import Lake, ObjectStore
from recloop.lake.store import ObjectInfo
from recloop.registry import ModelRegistry, ModelVersion
from recloop.registry.gate import (
    BundleOnItems,
    GateConfig,
    GateDecision,
    apply,
    decide,
    served_histories,
)
from recloop.training import dataset as ds
from recloop.training import search
from recloop.training.bundle import BundleMeta, HoldoutEvidence, ModelBundle
from recloop.training.evaluation import EvalResult, evaluate
from recloop.training.models import FAMILIES, ModelError, Recommender, make
from recloop.training.runs import Run, RunRecord, RunTracker

log = logging.getLogger(__name__)

# Progress hook: (stage description, units done, units in the stage).
Progress = Callable[[str, int, int], None]


REPEATS = ("miss", "drop", "allow")


class TrainError(RecloopError):
    """The training pipeline cannot run with these options or this data."""


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides a training run's result (recorded in the run's config)."""

    families: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    since: str | None = None
    until: str | None = None
    k: int = 10
    metric: str = "recall@10"
    seed: int = 42
    holdout_days: float = 7.0
    validation_days: float = 7.0
    search_budget: int = 4
    eval_users: int = 10_000
    dataset: dict[str, Any] = field(default_factory=dict)
    gate: GateConfig = field(default_factory=GateConfig)
    register: bool = True
    # What the holdout and the search's validation window count (always organic: events
    # carrying a rec_id are left out; `evaluation_split`), and
    # how many holdout users a comparison needs before the pipeline refuses to decide: with
    # per-user recall@10 spread ~0.3 (most users 0 or 1), the 95% interval of a mean over 200
    # users is +-0.04 wide, already the size of a large improvement; fewer users cannot tell
    # models apart, and a "decision" on them is noise with an interval attached.
    holdout_types: tuple[str, ...] = ("click",)
    min_holdout_users: int = 200
    # Holdout items the user already had before it (re-consumption), with seen items excluded
    # from recommendations: "miss" counts them as positives no model can hit, "drop" leaves
    # them out of the holdout (only discoveries count), "allow" lets models recommend seen items
    # and counts re-consumption as a hit (domains where repeats are wanted: groceries, music).
    repeats: str = "miss"

    @classmethod
    def from_settings(cls, **overrides: Any) -> TrainOptions:
        """Defaults from RECLOOP_* settings, then `overrides` (None values are ignored)."""
        from recloop.config import get_settings

        s = get_settings()
        base = cls(
            k=s.train_k,
            metric=s.train_metric,
            seed=s.train_seed,
            holdout_days=s.train_holdout_days,
            validation_days=s.train_validation_days,
            search_budget=s.train_search_budget,
            eval_users=s.train_eval_users,
            gate=GateConfig.from_settings(),
            min_holdout_users=s.train_min_holdout_users,
            repeats=s.train_repeats,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["families"] = list(self.families)
        data["holdout_types"] = list(self.holdout_types)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        values["families"] = tuple(values.get("families", ()))
        if "holdout_types" in values:
            values["holdout_types"] = tuple(values["holdout_types"])
        values["gate"] = GateConfig(**values.get("gate", {}))
        return cls(**values)

    def validate(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise TrainError(f"unknown model families {unknown}; known: {sorted(FAMILIES)}")
        name, _, k = self.metric.partition("@")
        if k != str(self.k) or name not in ("recall", "precision", "ndcg", "map", "hit_rate"):
            raise TrainError(
                f"metric {self.metric!r} must be one of recall/precision/ndcg/"
                f"map/hit_rate at K={self.k}"
            )
        if not self.holdout_types or self.min_holdout_users < 1:
            raise TrainError("the holdout needs event types and min_holdout_users >= 1")
        if self.repeats not in REPEATS:
            raise TrainError(f"repeats must be one of {REPEATS}, not {self.repeats!r}")
        if self.gate.metric != self.metric:
            raise TrainError(f"the gate's metric {self.gate.metric!r} differs from {self.metric!r}")
        _check_params(self.params, list(self.families) or default_families())


@dataclass
class Trial:
    """One configuration scored on the validation window."""

    family: str
    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    error: str | None = None


@dataclass
class TrainResult:
    """What a run produced: the run record, the chosen config, the version and the decision."""

    run: RunRecord
    family: str
    params: dict[str, Any]
    trials: list[Trial]
    holdout: dict[str, float]
    decision: GateDecision | None
    version: ModelVersion | None
    bundle_dir: Path | None  # None: written to a temporary folder, the registry holds it
    fits: int

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "family": self.family,
            "params": self.params,
            "holdout": self.holdout,
            "version": self.version.version if self.version else None,
            "status": str(self.version.status) if self.version else None,
            "approved": self.decision.approved if self.decision else None,
            "reason": self.decision.reason if self.decision else None,
            "fits": self.fits,
        }


@dataclass(frozen=True)
class Window:
    since: datetime | None
    validation_start: datetime
    holdout_start: datetime
    until: datetime

    def to_dict(self) -> dict[str, str | None]:
        return {k: v.isoformat() if v else None for k, v in asdict(self).items()}


# ---- the pipeline ------------------------------------------------------------------------------


def train(
    options: TrainOptions,
    lake: Lake,
    registry: ModelRegistry,
    tracker: RunTracker,
    *,
    bundle_dir: Path | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    kind: str = "train",
    use_champion: bool = True,
    apply_decision: bool = True,
    context: dict[str, Any] | None = None,
) -> TrainResult:
    """Run the whole pipeline (see the module docstring) inside a recorded run.

    `use_champion=False` gates against popularity even when a champion exists (reproductions).
    `apply_decision=False` registers the version but leaves it PendingManualApproval with the
    decision in the result (a caller applies it later). `context` (what triggered the run) is
    recorded in the run's config and the decision's evidence.
    """
    options.validate()
    say = progress or (lambda stage, done, total: None)
    seeds = {"search": options.seed, "evaluation": options.seed, "bootstrap": options.gate.seed}
    config = options.to_dict()
    if context:
        config["trigger"] = dict(context)
    with tracker.start(config, seeds, kind=kind, run_id=run_id) as run:
        return _train(
            options, lake, registry, run, bundle_dir, say, use_champion, apply_decision, context
        )


def _train(
    options: TrainOptions,
    lake: Lake,
    registry: ModelRegistry,
    run: Run,
    bundle_dir: Path | None,
    say: Progress,
    use_champion: bool,
    apply_decision: bool = True,
    context: dict[str, Any] | None = None,
) -> TrainResult:
    config = ds.DatasetConfig.from_dict(options.dataset) if options.dataset else ds.DatasetConfig()
    window = resolve_window(lake, options)
    run.set_result("window", window.to_dict())
    log.info("window %s", window.to_dict())
    families = list(options.families) or default_families()
    fits = 0

    # 1. search on the validation window (skipped when there is nothing to choose between)
    trials: list[Trial] = []
    candidates = {f: candidate_params(f, options) for f in families}
    if sum(len(c) for c in candidates.values()) > 1:
        with run.timer("data.search"):
            say("reading the search window", 0, 1)
            part = evaluation_split(
                lake, window.since, window.validation_start, window.holdout_start, config, options
            )
        with run.timer("search"):
            trials = _search(candidates, part.train, part.validation, options, say)
        del part
        fits += sum(1 for t in trials if t.error is None)
        run.set_result("search", [asdict(t) for t in trials])
        family, params = _best(trials, options.metric)
    else:
        family, params = families[0], candidates[families[0]][0]
    run.log_params({"family": family, "model": params})
    log.info("chosen %s %s", family, params)

    # 2. the holdout: the challenger, popularity and the champion on the same users
    # One streaming pass over the window: before the holdout, the holdout's organic clicks
    # (a click on a recommended list measures agreement with the champion), everything.
    with run.timer("data.read"):
        say("reading the lake window", 0, 1)
        full, train_part, holdout = _holdout_split(lake, window, config, options)
    if full.snapshot is not None:
        run.set_snapshot(full.snapshot)
        log.info("read %d events from %d objects", full.events_read, len(full.snapshot.objects))
    with run.timer("fit.holdout"):
        say(f"fitting {family} for the holdout", 0, 1)
        challenger_model = _fit(family, params, train_part)
        fits += 1
    with run.timer("evaluate.holdout"):
        say("evaluating on the holdout", 0, 1)
        challenger = _evaluate(challenger_model, train_part.matrix, holdout, options, baseline=True)
    _enough_users(challenger, options)
    run.log_metrics(challenger.to_dict(), prefix="holdout.")
    champion = registry.champion() if use_champion else None
    with run.timer("evaluate.champion"):
        decision, champion_metrics = _gate(
            challenger, train_part, holdout, registry, champion, options, window, context
        )
    if champion_metrics:
        run.log_metrics(champion_metrics, prefix="champion.")
    run.set_result(
        "gate",
        {"approved": decision.approved, "reason": decision.reason, "evidence": decision.evidence},
    )
    # Kept in the bundle: a gate that decides later (gate_registered) compares these, since
    # the registered model is the refit, which has seen the holdout.
    evidence = HoldoutEvidence.from_result(
        challenger, train_part.user_ids, window.holdout_start.isoformat(), window.until.isoformat()
    )
    del challenger_model, train_part, holdout

    # 3. the refit on the whole window, the bundle, the registry
    with run.timer("fit.refit"):
        say(f"refitting {family} on the whole window", 0, 1)
        model = _fit(family, params, full)
        fits += 1
    holdout_metrics = {k: float(v) for k, v in challenger.to_dict().items()}
    with _bundle_home(bundle_dir, options.register, run.run_id) as home:
        with run.timer("bundle"):
            folder = _write_bundle(
                model, full, family, params, holdout_metrics, run, window, home, evidence
            )
        if not options.register:  # else the registry's copy is the artifact; this folder may go
            run.add_artifact("bundle_dir", folder.as_uri())
        version = None
        if options.register:
            with run.timer("register"):
                say("registering", 0, 1)
                version = registry.register(folder, holdout_metrics, run.run_id)
                if apply_decision:
                    version = apply(registry, version.version, decision)
            run.add_artifact("bundle", version.artifact_uri)
            run.set_result("version", version.to_dict())
            log.info("version %s: %s", version.version, version.status)
    run.log_metrics({"fits": fits})
    say("done", 1, 1)
    kept = None if bundle_dir is None and options.register else folder
    return TrainResult(
        run.record, family, params, trials, holdout_metrics, decision, version, kept, fits
    )


@contextmanager
def _bundle_home(bundle_dir: Path | None, register: bool, run_id: str) -> Iterator[Path]:
    """Where the bundle is written: the caller's folder; else, when the registry keeps the
    artifact, a temporary folder removed once registered; else (the folder is the artifact)
    a durable one under the local root, never the system temp folder."""
    if bundle_dir is not None:
        yield bundle_dir
    elif register:
        with tempfile.TemporaryDirectory(prefix="recloop-bundle-") as tmp:
            yield Path(tmp) / "bundle"
    else:
        yield local_root() / "bundles" / run_id / "bundle"


# ---- stages ------------------------------------------------------------------------------------


def default_families() -> list[str]:
    """The families `recloop train` tries when none are named: every one with a search space
    (popularity included: if it wins validation, the gate rejects it against itself)."""
    return list(search.DEFAULT_FAMILIES)


def candidate_params(family: str, options: TrainOptions) -> list[dict[str, Any]]:
    """The configurations tried for a family: its search space with fixed params applied.

    `--param NAME=VALUE` fixes NAME for every family whose defaults have it; `family.NAME`
    fixes it for one family. Duplicates after fixing are dropped, so a fully fixed family
    is fitted once.
    """
    # Seeded families get the run's seed unless a --param fixes random_state (as search does).
    fixed = {
        **_accepted(family, {"random_state": options.seed}),
        **_fixed_params(family, options.params),
    }
    space = search.candidate_params(family, options.search_budget, options.seed)
    out: list[dict[str, Any]] = []
    for params in space:
        merged = {**params, **fixed}
        if merged not in out:
            out.append(merged)
    return out


def _fixed_params(family: str, params: dict[str, Any]) -> dict[str, Any]:
    defaults = make(family).params
    fixed = {}
    for name, value in params.items():
        scope, _, key = name.rpartition(".")
        if scope == family or (not scope and key in defaults):
            fixed[key] = value
    return fixed


def _check_params(params: dict[str, Any], families: list[str]) -> None:
    """Every --param must reach a family that runs: a typo is an error, not a silent no-op."""
    for name in params:
        scope, _, key = name.rpartition(".")
        targets = [scope] if scope else families
        if scope and scope not in families:
            raise TrainError(f"--param {name}: family {scope!r} is not among {families}")
        if not any(key in make(family).params for family in targets):
            raise TrainError(f"--param {name}: no parameter {key!r} in {targets}")


def _accepted(family: str, params: dict[str, Any]) -> dict[str, Any]:
    defaults = make(family).params
    return {name: value for name, value in params.items() if name in defaults}


def resolve_window(lake: Lake, options: TrainOptions) -> Window:
    """The run's window and split points; until defaults to the newest partition's end."""
    since = _as_utc(options.since)
    until = _as_utc(options.until)
    if until is None:
        span = lake.hour_span(since, None)
        if span is None:
            raise TrainError(f"the lake {lake.uri} has no events in the window")
        until = span[1]
    holdout_start = until - timedelta(days=options.holdout_days)
    validation_start = holdout_start - timedelta(days=options.validation_days)
    start = since
    if start is None:
        # No explicit start: the data's own first hour bounds the window, and a lake shorter
        # than validation + holdout would otherwise fail later with an empty training matrix.
        first = lake.hour_span(None, until)
        start = first[0] if first else until
    if validation_start <= start:
        raise TrainError(
            f"window {start.isoformat()} .. {until.isoformat()} is too short for "
            f"{options.validation_days:g} validation + {options.holdout_days:g} holdout days "
            "and some training days before them: use more data, or --validation-days / "
            "--holdout-days (RECLOOP_TRAIN_VALIDATION_DAYS / RECLOOP_TRAIN_HOLDOUT_DAYS)"
        )
    return Window(since, validation_start, holdout_start, until)


def _as_utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TrainError(f"{value!r} is not an ISO date or time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _fit(family: str, params: dict[str, Any], data: ds.InteractionData) -> Recommender:
    if data.nnz == 0:
        raise TrainError("no interactions to fit on")
    return make(family, **params).fit(data.matrix, data.ages)


def _evaluate(
    model: Recommender,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    options: TrainOptions,
    baseline: bool = False,
    users: np.ndarray | None = None,
) -> EvalResult:
    if users is None and not np.diff(test.indptr).any():
        raise TrainError("no user of the training window clicked in the evaluation window")
    return evaluate(
        model,
        train,
        test,
        k=options.k,
        users=users,
        max_users=None if users is not None else options.eval_users,
        seed=options.seed,
        baseline=baseline,
        batch_size=eval_batch_size(train.shape[1]),
        exclude_seen=options.repeats != "allow",
    )


def eval_batch_size(n_items: int, cells: int = 4_000_000) -> int:
    """Users scored at once: a dense users x items block of about `cells` floats (16 MB), so
    evaluation memory does not grow with the catalog."""
    return max(16, min(1024, cells // max(n_items, 1)))


def _search(
    candidates: dict[str, list[dict[str, Any]]],
    train: ds.InteractionData,
    test: sp.csr_matrix,
    options: TrainOptions,
    say: Progress,
) -> list[Trial]:
    import time

    total = sum(len(c) for c in candidates.values())
    trials: list[Trial] = []
    for family, configs in candidates.items():
        for params in configs:
            say(f"search: {family}", len(trials), total)
            trial = Trial(family, params)
            start = time.perf_counter()
            try:
                model = _fit(family, params, train)
                trial.fit_seconds = time.perf_counter() - start
                trial.metrics = _evaluate(model, train.matrix, test, options).metrics
            except ModelError as exc:  # one family failing (EASE on a huge catalog) is a row
                trial.error = str(exc)
                log.warning("search: %s %s failed: %s", family, params, exc)
            trials.append(trial)
    say("search", total, total)
    return trials


def _best(trials: list[Trial], metric: str) -> tuple[str, dict[str, Any]]:
    scored = [
        t for t in trials if t.error is None and math.isfinite(t.metrics.get(metric, math.nan))
    ]
    if not scored:
        errors = "; ".join(f"{t.family}: {t.error}" for t in trials)
        raise TrainError(f"every configuration failed: {errors}")
    best = max(scored, key=lambda t: t.metrics[metric])  # the first of equals wins: stable
    return best.family, best.params


def _gate(
    challenger: EvalResult,
    train: ds.InteractionData,
    holdout: sp.csr_matrix,
    registry: ModelRegistry,
    champion: ModelVersion | None,
    options: TrainOptions,
    window: Window,
    extra: dict[str, Any] | None = None,
) -> tuple[GateDecision, dict[str, float]]:
    context: dict[str, Any] = {
        "holdout": {"start": window.holdout_start.isoformat(), "end": window.until.isoformat()},
        **(extra or {}),
    }
    if champion is None:
        assert challenger.baseline is not None
        context["champion_version"] = None
        return decide(challenger, challenger.baseline, "popularity", options.gate, context), {}
    with tempfile.TemporaryDirectory(prefix="recloop-champion-") as tmp:
        folder = registry.download(champion.version, Path(tmp) / champion.version)
        bundle = ModelBundle.load(folder)
        if _trained_into(bundle, window.holdout_start):
            # The artifact was fitted on (some of) the holdout's events: scored there it would
            # win by memory. Its recipe is compared instead: the champion's recorded family and
            # parameters refitted on the challenger's pre-holdout data, like the challenger.
            result, how = _champion_recipe(bundle, train, holdout, options, challenger.users)
            name = f"champion v{champion.version}'s recipe ({bundle.meta.family})"
        else:
            adapted = BundleOnItems(bundle, train.item_ids)
            # As it serves: the users' rows plus the training rows its bundle carries (all
            # before the holdout, since its training ended before it).
            histories = served_histories(bundle, train)
            result = _evaluate(adapted, histories, holdout, options, users=challenger.users)
            how = {
                "scored": "artifact",
                "why": f"trained until {bundle.meta.train_end}, before the holdout",
            }
            name = f"champion v{champion.version}"
    context["champion_version"] = champion.version
    context["champion_scored_as"] = how
    return decide(challenger, result, name, options.gate, context), result.metrics


def _champion_recipe(
    bundle: ModelBundle,
    train: ds.InteractionData,
    holdout: sp.csr_matrix,
    options: TrainOptions,
    users: np.ndarray,
) -> tuple[EvalResult, dict[str, Any]]:
    family, params = bundle.meta.family, dict(bundle.meta.params)
    try:
        model = _fit(family, params, train)
    except (ModelError, TypeError, ValueError) as exc:
        raise TrainError(
            f"the champion was trained into the holdout (until {bundle.meta.train_end}), so "
            f"its artifact cannot be scored there, and its recipe {family} {params} cannot be "
            f"refitted: {exc}; decide by hand (recloop registry approve|reject)"
        ) from exc
    result = _evaluate(model, train.matrix, holdout, options, users=users)
    how = {
        "scored": "recipe",
        "why": f"trained until {bundle.meta.train_end}, into the holdout: its artifact has "
        "seen the holdout's events",
        "family": family,
        "params": params,
    }
    return result, how


def _trained_into(bundle: ModelBundle, moment: datetime) -> bool:
    """The bundle's training window ends after `moment` (or its end is unknown)."""
    end = _as_utc(bundle.meta.train_end)
    return end is None or end > moment


def evaluation_split(
    lake: Lake,
    start: datetime | None,
    split_at: datetime,
    end: datetime,
    config: ds.DatasetConfig,
    options: TrainOptions,
) -> ds.WindowSplit:
    """One pass over [start, end): training data before `split_at`, and what a model is scored
    on after it: the organic `holdout_types` events (events carrying a rec_id are left out).

    The search's validation window and the gate's holdout are both read here, so they count
    the same clicks: a click on a recommended list happened because the serving model showed
    the item, and counting it would reward agreement with that model (see docs/training.md).
    """
    split = ds.split_lake_window(
        lake,
        start,
        split_at,
        end,
        config,
        test_types=options.holdout_types,
        organic_test=True,
    )
    if options.repeats == "drop":
        # Only discoveries count: pairs the user already had before the split are not positives.
        seen = split.validation.multiply(split.train.matrix > 0)
        kept = sp.csr_matrix(split.validation - seen, dtype=np.float32)
        kept.eliminate_zeros()
        split = replace(split, validation=kept)
    return split


def _holdout_split(
    lake: Lake, window: Window, config: ds.DatasetConfig, options: TrainOptions
) -> tuple[ds.InteractionData, ds.InteractionData, sp.csr_matrix]:
    """(everything, before the holdout, the holdout's organic `holdout_types` events)."""
    split = evaluation_split(
        lake, window.since, window.holdout_start, window.until, config, options
    )
    return split.full, split.train, split.validation


def _enough_users(result: EvalResult, options: TrainOptions) -> None:
    if len(result.users) < options.min_holdout_users:
        raise TrainError(
            f"the holdout has {len(result.users)} users with organic "
            f"{'/'.join(options.holdout_types)} events, need {options.min_holdout_users}: "
            "too few to tell two models apart, so no decision is made; use a longer "
            "holdout (--holdout-days), or lower the minimum knowingly (--min-holdout-users, "
            "RECLOOP_TRAIN_MIN_HOLDOUT_USERS, min_holdout_users)"
        )


def gate_registered(
    options: TrainOptions, lake: Lake, registry: ModelRegistry, version: str
) -> tuple[ModelVersion, GateDecision]:
    """Gate an already registered, still pending version against the champion and apply it.

    For a model registered without a decision (a training job's, `train(...,
    apply_decision=False)`). The registered model is the refit on the whole window, holdout
    included: scored on that holdout it would be flattered by answers it has seen. So the
    challenger's side is the holdout evaluation its run kept in the bundle (the same
    configuration fitted before the holdout: per-user metric vectors, popularity's beside),
    and the champion is scored by `_gate`, as `train` scores it, on that run's holdout, read
    from exactly the lake objects the run read (its snapshot manifest), and on the same users.

    What was measured (window, dataset config, event types, K, users) is the run's; the gate's
    rule (metric, margin, bootstrap, confidence) and `min_holdout_users` are `options`'.
    """
    options.validate()
    champion = registry.champion()
    if champion is not None and champion.version == version:
        raise TrainError(f"version {version} is already the champion")
    registered = registry.get(version)
    with tempfile.TemporaryDirectory(prefix="recloop-gate-") as tmp:
        evidence = ModelBundle.load(registry.download(version, Path(tmp) / version)).holdout
    if evidence is None or registered.run_id is None:
        raise TrainError(
            f"version {version} carries no holdout evaluation of a fit before its holdout "
            "(registered by hand or by an older recloop); its refitted model has seen the "
            "holdout, so decide by hand: recloop registry approve|reject"
        )
    record = RunTracker.for_registry(registry).get(registered.run_id)
    if record.snapshot is None or "window" not in record.results:
        raise TrainError(f"run {record.run_id} of version {version} recorded no window snapshot")
    ran = TrainOptions.from_dict(record.config)
    if options.metric not in evidence.metrics:
        raise TrainError(
            f"the gate's metric {options.metric} was not measured by run {record.run_id} "
            f"(it has {list(evidence.metrics)})"
        )
    ran = replace(
        ran, metric=options.metric, gate=options.gate, min_holdout_users=options.min_holdout_users
    )
    window = _recorded_window(record.results["window"])
    if (window.holdout_start.isoformat(), window.until.isoformat()) != (
        evidence.start,
        evidence.end,
    ):
        raise TrainError(f"version {version}'s holdout evaluation is not its run's holdout")
    config = ds.DatasetConfig.from_dict(ran.dataset) if ran.dataset else ds.DatasetConfig()
    pinned = Lake(ManifestStore(lake.store, record.snapshot))
    _, train_part, holdout = _holdout_split(pinned, window, config, ran)
    challenger = evidence.result(_recorded_rows(evidence, train_part, holdout))
    _enough_users(challenger, ran)
    decision, _ = _gate(challenger, train_part, holdout, registry, champion, ran, window)
    return apply(registry, version, decision), decision


def _recorded_window(data: dict[str, str | None]) -> Window:
    since = _as_utc(data.get("since"))
    points = [_as_utc(data.get(name)) for name in ("validation_start", "holdout_start", "until")]
    if any(point is None for point in points):
        raise TrainError(f"the run's window {data} lacks its split points")
    validation_start, holdout_start, until = (p for p in points if p is not None)
    return Window(since, validation_start, holdout_start, until)


def _recorded_rows(
    evidence: HoldoutEvidence, train: ds.InteractionData, holdout: sp.csr_matrix
) -> np.ndarray:
    """The recorded users' rows in `train`; the re-read holdout must be the one recorded."""
    rows = pd.Index(np.asarray(train.user_ids).astype(str)).get_indexer(
        np.asarray(evidence.user_ids).astype(str)
    )
    same = (rows >= 0).all() and np.array_equal(
        np.diff(holdout.indptr)[np.maximum(rows, 0)], evidence.n_test
    )
    if not same:
        raise TrainError(
            "the holdout read again differs from the one the run evaluated on (its users or "
            "their holdout events); refusing to compare models on different data"
        )
    return np.asarray(rows, dtype=np.int64)


def _write_bundle(
    model: Recommender,
    data: ds.InteractionData,
    family: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    run: Run,
    window: Window,
    folder: Path,
    holdout: HoldoutEvidence | None = None,
) -> Path:
    popularity = np.diff(sp.csc_matrix(data.matrix > 0).indptr).astype(np.float32)
    snapshot = data.snapshot
    bundle = ModelBundle(
        model=model,
        item_ids=data.item_ids,
        user_ids=data.user_ids,
        item_popularity=popularity,
        meta=BundleMeta(
            family=family,
            params=dict(model.params),
            train_start=window.since.isoformat() if window.since else None,
            train_end=window.until.isoformat(),
            snapshot_digest=snapshot.digest if snapshot else "",
            snapshot_rows=snapshot.rows if snapshot else data.events_read,
            metrics=metrics,
            run_id=run.run_id,
            extra={"dataset": data.config.to_dict(), "chosen_params": params},
        ),
        history=data.matrix,
        holdout=holdout,
    )
    return bundle.save(folder)


# ---- reproduction ------------------------------------------------------------------------------


class ManifestStore:
    """A read-only view of a store showing only a snapshot's objects, each checked on read.

    Reproducing a run through it reads exactly the objects the run read: events that arrived
    later in the same window are invisible, and a changed object is an error, not a silent drift.
    """

    def __init__(self, store: ObjectStore, manifest: dict[str, Any]) -> None:
        self.inner = store
        self.uri = store.uri
        self.entries = {o["key"]: o for o in manifest.get("objects", [])}

    def put_if_absent(self, key: str, data: bytes) -> bool:
        raise TrainError("a reproduction never writes to the lake")

    def retire(self, key: str) -> None:
        raise TrainError("a reproduction never changes the lake")

    def get(self, key: str) -> bytes:
        import hashlib

        from recloop.errors import LakeError

        entry = self.entries.get(key)
        if entry is None:
            raise LakeError(f"{key!r} is not in the run's snapshot")
        data = self.inner.get(key)
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise LakeError(f"{key!r} changed since the run (checksum differs)")
        return data

    def copy_to(self, key: str, path: Path) -> None:
        path.write_bytes(self.get(key))  # checked whole: reproductions read lake objects

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self.entries):
            if key.startswith(prefix):
                yield ObjectInfo(key, int(self.entries[key]["size"]))


@dataclass
class Reproduction:
    """A recorded run's metrics beside a fresh run's, from the same config and objects."""

    run_id: str
    recorded: dict[str, float]
    reproduced: dict[str, float]
    new_run_id: str

    @property
    def max_abs_diff(self) -> float:
        keys = set(self.recorded) & set(self.reproduced)
        return max((abs(self.recorded[k] - self.reproduced[k]) for k in keys), default=math.inf)

    def matches(self, tolerance: float = 1e-9) -> bool:
        return bool(set(self.recorded)) and self.max_abs_diff <= tolerance


def reproduce(
    run_id: str,
    tracker: RunTracker,
    registry: ModelRegistry,
    lake: Lake | None = None,
    progress: Progress | None = None,
) -> Reproduction:
    """Re-run a recorded run from its config on exactly its lake objects; nothing is registered.

    The champion the run was gated against may have changed since, so the reproduction gates
    against popularity and registers nothing; what is compared is the holdout metrics.
    """
    record = tracker.get(run_id)
    if record.snapshot is None:
        raise TrainError(f"run {run_id} recorded no data snapshot")
    options = replace(TrainOptions.from_dict(record.config), register=False)
    window = record.results.get("window", {})
    options = replace(options, since=window.get("since"), until=window.get("until"))
    source = lake or Lake.from_uri(record.snapshot["lake_uri"])
    pinned = Lake(ManifestStore(source.store, record.snapshot))
    result = train(
        options, pinned, registry, tracker, progress=progress, kind="reproduce", use_champion=False
    )
    prefix = "holdout."
    recorded = {k[len(prefix) :]: v for k, v in record.metrics.items() if k.startswith(prefix)}
    return Reproduction(run_id, recorded, result.holdout, result.run.run_id)
