"""`recloop train | runs | registry | recommend-batch | evaluate` end to end on a small lake."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recloop.cli import app
from training_fixtures import write_synthetic_lake

runner = CliRunner()
# 21 days of synthetic traffic from 2026-01-01; training stops on day 15 so that
# `recloop evaluate` has a week of unseen clicks after the model's window.
FAST = [
    "--model",
    "als",
    "--param",
    "factors=8",
    "--param",
    "iterations=4",
    "--param",
    "regularization=0.1",
    "--budget",
    "1",
    "--until",
    "2026-01-15",
    "--holdout-days",
    "4",
    "--validation-days",
    "3",
    # A small synthetic world (~100 holdout users): these tests are not about the gate's power.
    "--min-holdout-users",
    "20",
]


@pytest.fixture
def uris(tmp_path: Path) -> list[str]:
    write_synthetic_lake((tmp_path / "lake").as_uri(), seed=11)
    return ["--lake", (tmp_path / "lake").as_uri(), "--registry", (tmp_path / "reg").as_uri()]


def _json(result: object) -> dict:  # type: ignore[type-arg]
    output = result.stdout  # type: ignore[attr-defined]
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _registry(uris: list[str]) -> list[str]:
    return uris[2:]


def test_train_registers_gates_and_records_a_run(uris: list[str]) -> None:
    first = runner.invoke(app, ["train", *FAST, *uris, "--json"])
    assert first.exit_code == 0, first.output
    summary = _json(first)
    assert summary["family"] == "als" and summary["version"] == "1"
    assert summary["status"] == "Approved" and "popularity" in summary["reason"]
    assert summary["holdout"]["recall@10"] > summary["holdout"]["popularity_recall@10"]
    # The same data again: no improvement over the champion, so the gate rejects it.
    second = _json(runner.invoke(app, ["train", *FAST, *uris, "--json"]))
    assert second["status"] == "Rejected" and "champion v1" in second["reason"]

    listed = _json(runner.invoke(app, ["registry", "list", *_registry(uris), "--json"]))
    assert listed["champion"] == "1"
    assert [v["status"] for v in listed["versions"]] == ["Approved", "Rejected"]

    runs = _json(runner.invoke(app, ["runs", "list", *_registry(uris), "--json"]))["runs"]
    assert [r["version"] for r in runs] == ["1", "2"]
    shown = _json(
        runner.invoke(app, ["runs", "show", runs[0]["run_id"], *_registry(uris), "--json"])
    )
    assert shown["snapshot"]["objects"] and shown["git"]["sha"]
    assert shown["results"]["gate"]["evidence"]["bootstrap"]["lower"] > 0
    compared = runner.invoke(
        app, ["runs", "compare", runs[0]["run_id"], runs[1]["run_id"], *_registry(uris)]
    )
    assert compared.exit_code == 0 and "holdout.recall@10" in compared.output
    again = runner.invoke(app, ["runs", "reproduce", runs[0]["run_id"], *uris, "--json"])
    assert again.exit_code == 0, again.output
    assert _json(again)["matches"] is True


def test_registry_approve_and_reject_by_hand(uris: list[str]) -> None:
    runner.invoke(app, ["train", *FAST, *uris, "--json"])
    reg = _registry(uris)
    rejected = runner.invoke(
        app, ["registry", "reject", "1", "--reason", "bad online", *reg, "--json"]
    )
    assert _json(rejected)["status"] == "Rejected"
    assert _json(runner.invoke(app, ["registry", "list", *reg, "--json"]))["champion"] is None
    approved = runner.invoke(app, ["registry", "approve", "1", "--reason", "fixed", *reg])
    assert approved.exit_code == 0 and "Approved" in approved.output
    missing = runner.invoke(app, ["registry", "approve", "7", "--reason", "x", *reg])
    assert missing.exit_code == 2 and "no model version 7" in missing.output


def test_recommend_batch_writes_ranked_csv_excluding_training_items(
    uris: list[str], tmp_path: Path
) -> None:
    runner.invoke(app, ["train", *FAST, *uris, "--json"])
    users = tmp_path / "users.txt"
    users.write_text("user_id\nu0001\nu0002\nnobody\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(
        app,
        [
            "recommend-batch",
            "--model",
            "champion",
            "--users",
            str(users),
            "--k",
            "5",
            "--out",
            str(out),
            *_registry(uris),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _json(result) | {"out": ""} == {
        "model": "1",
        "users": 3,
        "known_users": 2,
        "rows": 15,
        "out": "",
    }
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["user_id", "item_id", "rank", "score"]
    by_user: dict[str, list[str]] = {}
    for row in rows:
        by_user.setdefault(row["user_id"], []).append(row["item_id"])
    assert [int(r["rank"]) for r in rows if r["user_id"] == "u0001"] == [1, 2, 3, 4, 5]
    # u0001 is in taste group 1 (id % 4): its items are i010..i019; none seen in training.
    from recloop.registry import registry_from_uri
    from recloop.training.bundle import ModelBundle

    bundle = ModelBundle.load(registry_from_uri(uris[3]).download("1", tmp_path / "b"))
    seen = {str(bundle.item_ids[i]) for i in bundle.training_history(["u0001"]).indices}
    assert seen and not seen & set(by_user["u0001"])
    assert all(10 <= int(item[1:]) < 20 for item in by_user["u0001"])
    assert by_user["nobody"] == [item for item, _ in bundle.popular(5)]


def test_evaluate_writes_an_html_report_with_png_plots(uris: list[str], tmp_path: Path) -> None:
    runner.invoke(app, ["train", *FAST, *uris, "--json"])
    out = tmp_path / "report" / "v1.html"
    result = runner.invoke(app, ["evaluate", "--model", "1", "--out", str(out), *uris, "--json"])
    assert result.exit_code == 0, result.output
    report = _json(result)
    assert report["window"][0].startswith("2026-01-15") and not report["overlaps_training"]
    assert report["model"]["recall"][2] > report["popularity"]["recall"][2]
    page = out.read_text()
    assert "v1-metric-at-k.png" in page and "v1-segments.png" in page
    for name in ("v1-metric-at-k.png", "v1-segments.png"):
        assert (out.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A window inside the training data is allowed but flagged (no second plot needed).
    from recloop.lake import Lake
    from recloop.registry import registry_from_uri
    from recloop.training.bundle import ModelBundle
    from recloop.training.report import evaluate_bundle

    bundle = ModelBundle.load(registry_from_uri(uris[3]).download("1", tmp_path / "b"))
    inside = evaluate_bundle(
        bundle, Lake.from_uri(uris[1]), start=datetime(2026, 1, 10, tzinfo=UTC)
    )
    assert inside.overlaps_training and inside.users > 0


@pytest.mark.slow
def test_train_with_every_family_prints_readable_tables(uris: list[str]) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--budget",
            "1",
            "--until",
            "2026-01-15",
            "--holdout-days",
            "4",
            "--validation-days",
            "3",
            "--min-holdout-users",
            "20",
            *uris,
        ],
    )
    assert result.exit_code == 0, result.output
    for text in (
        "search (validation window)",
        "recall@10",
        "als",
        "itemknn",
        "ease",
        "holdout",
        "gate:",
    ):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--param", "factors"], "expected NAME=VALUE"),
        (["train", "--backend", "cloud"], "--backend must be"),
        (["train", "--model", "nope"], "unknown model families"),
        (["train", "--model", "als", "--param", "factor=8"], "no parameter 'factor'"),
        (["train", "--model", "als", "--param", "ease.l2=5"], "not among"),
        (["train", "--metric", "auc@10"], "metric"),
        (["runs", "show", "no-such-run"], "no run"),
        (
            ["recommend-batch", "--model", "champion", "--users", "/nonexistent", "--out", "x.csv"],
            "cannot read users",
        ),
    ],
)
def test_bad_input_is_a_one_line_error_with_exit_2(
    uris: list[str], args: list[str], message: str
) -> None:
    scoped = [*args, *(uris if args[0] == "train" else _registry(uris))]
    result = runner.invoke(app, scoped)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_sagemaker_backend_names_what_is_missing_before_calling_aws(
    uris: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/train")
    result = runner.invoke(app, ["train", "--backend", "sagemaker", "--model", "als", *uris])
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "launching" not in text
    for missing in ("training image", "s3:// lake", "s3:// output", "registry the job can reach"):
        assert missing in text
    assert "role" not in text.split("needs", 1)[1]


def test_train_on_an_empty_lake_or_a_too_short_window_is_a_clear_error(
    tmp_path: Path, uris: list[str]
) -> None:
    empty = ["--lake", (tmp_path / "empty").as_uri(), "--registry", (tmp_path / "r").as_uri()]
    result = runner.invoke(app, ["train", *empty])
    assert result.exit_code == 2 and "no events" in result.output
    short = runner.invoke(app, ["train", "--since", "2026-01-10", "--until", "2026-01-15", *uris])
    assert short.exit_code == 2 and "too short" in " ".join(short.output.split())
