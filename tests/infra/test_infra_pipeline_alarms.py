"""The alarms on the loop's own failures (terraform/modules/monitoring/pipeline_alarms.tf).

No Terraform or AWS can run here: the .tf files are parsed (python-hcl2, tests/infra/tfparse)
and checked against what the code and the other modules actually name and emit.
"""

from __future__ import annotations

import logging
import re

import pytest
from tfparse import MODULES, first, load

from recloop.serving.metrics import ServingMetrics
from recloop.serving.runtime import REJECTED_EVENT, Runtime


def test_each_pipeline_failure_has_an_alarm_that_notifies_on_call() -> None:
    alarms = load(MODULES / "monitoring").resources("aws_cloudwatch_metric_alarm")
    assert {"lambda_errors", "iterator_age", "monitor_failing", "champion_rejected"} <= set(alarms)
    for name in ("lambda_errors", "iterator_age", "monitor_failing", "champion_rejected"):
        assert alarms[name]["alarm_actions"] == ["${var.alarm_topic_arn}"]
    assert alarms["iterator_age"]["metric_name"] == "IteratorAge"
    assert alarms["iterator_age"]["dimensions"] == {"FunctionName": "${local.weblog_function}"}
    assert alarms["lambda_errors"]["metric_name"] == "Errors"
    failing = next(q for q in alarms["monitor_failing"]["metric_query"] if q["id"] == "failing")
    # Errors or no run at all: a monitor that stopped running must page too.
    assert "errors" in failing["expression"] and "invocations" in failing["expression"]
    assert alarms["monitor_failing"]["treat_missing_data"] == "breaching"


def test_the_default_names_are_the_ones_the_other_modules_give() -> None:
    monitoring = load(MODULES / "monitoring").locals()
    ingest = load(MODULES / "ingest").locals()
    training = load(MODULES / "training").locals()
    serving_logs = load(MODULES / "serving").resources("aws_cloudwatch_log_group")["service"]
    assert ingest["function_name"] in monitoring["weblog_function"]
    assert training["monitor_name"] in monitoring["monitor_function"]
    assert training["promote_name"] in monitoring["promote_function"]
    assert serving_logs["name"] in monitoring["serving_logs"]


def test_the_rejected_champion_filter_matches_the_line_serving_writes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    filters = load(MODULES / "monitoring").resources("aws_cloudwatch_log_metric_filter")
    rejected = filters["champion_rejected"]
    # A quoted term: CloudWatch matches log events that contain the phrase.
    term = re.fullmatch(r'"(.+)"', rejected["pattern"])
    assert term is not None and term.group(1) == REJECTED_EVENT
    transform = first(rejected["metric_transformation"])
    assert transform["name"] == "ChampionRejected" and transform["value"] == "1"

    runtime = Runtime.__new__(Runtime)
    runtime.metrics = ServingMetrics()
    with caplog.at_level(logging.ERROR, logger="recloop.serving.runtime"):
        runtime._rejected("7", "checksum mismatch for item_popularity.npy")
    assert any(term.group(1) in record.getMessage() for record in caplog.records)
    assert 'recloop_model_rejected_total{version="7"} 1.0' in runtime.metrics.render().decode()
