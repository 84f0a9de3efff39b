"""Offline quality of every model family on MovieLens-100K, under two protocols.

1. Random: per-user stratified 75/25 split (seed 42), K = 10, training items excluded (the
   Microsoft Recommenders protocol; their published anchors are printed beside).
2. Temporal: hyperparameters searched per family on a validation week (train before T - 7d,
   validate on [T - 7d, T)), the chosen configuration refit on everything before T = the last
   4 weeks, then scored week by week on the next 4 weeks (and pooled), popularity beside.
   Only users seen before T can be scored; MovieLens users rate mostly in one burst, so the
   weekly samples are small: the table gives the user count and a bootstrap interval.

Usage: .venv/bin/python bench/train_quality.py [path/to/u.data] [--budget N]
Prints markdown tables; the last line is one JSON object of figures, including the ratio of
the best personalised family's pooled temporal recall@10 to popularity's (same run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from recloop.training.dataset import align, from_table, stratified_split, temporal_split
from recloop.training.evaluation import EvalResult, evaluate, paired_bootstrap
from recloop.training.models import make
from recloop.training.search import refit, train_all

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECLOOP_SHARED", REPO.parent / "shared"))
ANCHORS = {"BiVAE": (0.475, 0.412), "BPR (cornac)": (0.442, 0.388), "SAR": (0.383, 0.331)}
FAMILIES = ["popularity", "popularity_recent", "itemknn", "als", "bpr", "ease"]
CHOSEN_EASE = {"l2": 300.0, "dropout": 0.5, "weighting": "log"}
COLUMNS: dict[str, Any] = {"type_col": None, "weight_col": "rating"}


def _ratings(path: Path) -> pd.DataFrame:
    names = ["user_id", "item_id", "rating", "timestamp"]
    return pd.read_csv(path, sep="\t", names=names)


def random_protocol(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    data = from_table(frame, **COLUMNS)
    train, test = stratified_split(data.matrix, 0.25, seed=42)
    print("## Random 75/25 split (seed 42), K = 10\n")
    print("| model | nDCG@10 | precision@10 | recall@10 | MAP@10 | fit s |")
    print("|---|---|---|---|---|---|")
    out = {}
    configs = [(f, {}) for f in FAMILIES if f != "popularity_recent"] + [("ease", CHOSEN_EASE)]
    for family, params in configs:
        started = time.perf_counter()
        model = make(family, **params).fit(train)
        seconds = time.perf_counter() - started
        m = evaluate(model, train, test, k=10).metrics
        label = family + (" " + json.dumps(params) if params else " (defaults)")
        out[label] = m
        print(
            f"| {label} | {m['ndcg@10']:.4f} | {m['precision@10']:.4f} | "
            f"{m['recall@10']:.4f} | {m['map@10']:.4f} | {seconds:.2f} |"
        )
    for name, (ndcg, precision) in ANCHORS.items():
        print(f"| published: {name} | {ndcg:.3f} | {precision:.3f} | | | |")
    print()
    return out


@dataclass
class Temporal:
    """What the temporal protocol chose and measured."""

    figures: dict[str, dict[str, Any]]
    chosen: dict[str, dict[str, Any]]
    best: str
    bootstrap: dict[str, dict[str, float]]


def temporal_protocol(frame: pd.DataFrame, budget: int) -> Temporal:
    stamps = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    end = stamps.max().ceil("D").to_pydatetime()
    split_at = end - timedelta(days=28)
    validate_at = split_at - timedelta(days=7)

    # Search on the validation week, before the test weeks are looked at.
    search_train, validation = temporal_split(
        frame[stamps < split_at], validate_at, split_at, **COLUMNS
    )
    ranked = train_all(
        search_train.matrix, validation, FAMILIES, budget=budget, seed=0, ages=search_train.ages
    )
    chosen = {r.family: r for r in ranked}
    train, _ = temporal_split(frame, split_at, end, **COLUMNS)
    models = {f: refit(chosen[f], train.matrix, train.ages) for f in FAMILIES}

    print(f"## Temporal: train before {split_at:%Y-%m-%d}, test week by week, K = 10\n")
    print(
        f"Chosen on the validation week ({validate_at:%Y-%m-%d} to {split_at:%Y-%m-%d}, "
        f"budget {budget} per family, by validation recall@10):\n"
    )
    for r in ranked:
        print(
            f"- {r.family}: `{json.dumps(_tunable(r.params))}` (validation recall@10 {r.score:.4f})"
        )
    print()
    print("| window | users | " + " | ".join(FAMILIES) + " |")
    print("|---|---|" + "---|" * len(FAMILIES))
    windows = [
        (f"week {w + 1}", split_at + timedelta(days=7 * w), split_at + timedelta(days=7 * w + 7))
        for w in range(4)
    ] + [("weeks 1-4", split_at, end)]
    figures: dict[str, dict[str, Any]] = {}
    results: dict[str, EvalResult] = {}
    for label, lo, hi in windows:
        test_data = from_table(frame[(stamps >= lo) & (stamps < hi)], **COLUMNS)
        test = align(test_data, train.user_ids, train.item_ids)
        results = {f: evaluate(models[f], train.matrix, test, k=10) for f in FAMILIES}
        n_users = len(results["popularity"].users)
        cells = [
            f"{r.metrics['recall@10']:.3f} / {r.metrics['ndcg@10']:.3f}" for r in results.values()
        ]
        print(f"| {label} | {n_users} | " + " | ".join(cells) + " |")
        figures[label] = {f: _pick(r) for f, r in results.items()} | {"users": n_users}
    print("\nCells: recall@10 / nDCG@10; weeks 1-4 pools the four weeks.\n")
    # `results` now holds the pooled window: compare the best families with popularity there.
    personal = [f for f in FAMILIES if not f.startswith("popularity")]
    best = max(personal, key=lambda f: results[f].metrics["recall@10"])
    boots = {}
    for family in (best, "popularity_recent"):
        boot = paired_bootstrap(results[family], results["popularity"], "recall@10", 2000, 0)
        boots[family] = {"mean_diff": boot.mean_diff, "lower": boot.lower, "upper": boot.upper}
        print(
            f"Pooled weeks 1-4, {family} minus popularity, recall@10: {boot.mean_diff:+.4f} "
            f"(95% CI {boot.lower:+.4f} .. {boot.upper:+.4f}, {boot.n_users} users)\n"
        )
    return Temporal(
        figures,
        {r.family: _tunable(r.params) for r in ranked},
        best,
        boots,
    )


def _tunable(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in params.items() if k not in {"num_threads", "random_state", "max_items"}
    }


def _pick(result: EvalResult) -> dict[str, float]:
    return {k: round(result.metrics[k], 4) for k in ("recall@10", "ndcg@10")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "u_data", nargs="?", type=Path, default=SHARED / "data" / "movielens-100k" / "u.data"
    )
    parser.add_argument("--budget", type=int, default=6)
    args = parser.parse_args()
    if not args.u_data.is_file():
        raise SystemExit(f"{args.u_data} is absent: pass the path to MovieLens-100K u.data")
    frame = _ratings(args.u_data)
    started = time.perf_counter()
    random_figures = random_protocol(frame)
    temporal = temporal_protocol(frame, args.budget)
    pooled = temporal.figures["weeks 1-4"]
    best = temporal.best
    chosen = random_figures["ease " + json.dumps(CHOSEN_EASE)]
    print(
        json.dumps(
            {
                "random_ease_ndcg@10": round(chosen["ndcg@10"], 4),
                "random_ease_precision@10": round(chosen["precision@10"], 4),
                "random_popularity_ndcg@10": round(
                    random_figures["popularity (defaults)"]["ndcg@10"], 4
                ),
                "temporal_best_personalised_family": best,
                "temporal_best_personalised_recall@10": pooled[best]["recall@10"],
                "temporal_popularity_recent_recall@10": pooled["popularity_recent"]["recall@10"],
                "temporal_popularity_recall@10": pooled["popularity"]["recall@10"],
                "ratio_best_personalised_vs_popularity_recall@10": round(
                    pooled[best]["recall@10"] / max(pooled["popularity"]["recall@10"], 1e-9), 3
                ),
                "bootstrap_recall@10_diff_vs_popularity": {
                    family: {k: round(v, 4) for k, v in ci.items()}
                    for family, ci in temporal.bootstrap.items()
                },
                "chosen_params": temporal.chosen,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
