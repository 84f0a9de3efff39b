"""`recloop demo --aws` gives each function and task the environment Terraform gives it.

The harness (recloop.harness.terraform) spells out each environment; these tests read
terraform/ (python-hcl2, tfparse), resolve its expressions with the demo's resource names and
fail when the two disagree, so the demo cannot drift from what is deployed. Every RECLOOP_*
name must also be a setting recloop reads.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import tfparse

from recloop.config import Settings
from recloop.harness import terraform as tf

RESOURCES = tf.Resources()
_REF = re.compile(r"\$\{([^}]+)\}")
_PAIR = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([\w.]+))')


def _resolve(value: str) -> str:
    names = RESOURCES.variables()

    def one(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression in names, f"the harness does not know Terraform's {expression}"
        return names[expression]

    return _REF.sub(one, value)


def _variables(body: Any, module: tfparse.Config) -> dict[str, str]:
    """A function's `environment { variables = ... }`: a map, or merge(local.x, {...})."""
    variables = tfparse.first(body["environment"])["variables"]
    if isinstance(variables, dict):
        return {k: _resolve(str(v)) for k, v in variables.items()}
    merged = re.fullmatch(r"\$\{merge\(local\.(\w+),\s*\{(.*)\}\)\}", variables, re.S)
    assert merged, f"unexpected environment expression {variables!r}"
    out = {k: _resolve(str(v)) for k, v in module.locals()[merged.group(1)].items()}
    for name, text, ref in _PAIR.findall(merged.group(2)):
        out[name] = text if ref == "" else _resolve("${" + ref + "}")
    return out


def _lambda_env(component: str, function: str) -> dict[str, str]:
    module = tfparse.load(tfparse.MODULES / component)
    return _variables(module.resources("aws_lambda_function")[function], module)


def _serving_secrets() -> dict[str, str]:
    text = tfparse.load(tfparse.MODULES / "serving").text()
    block = re.search(r"secrets = \[(.*?)\n\s*\]", text, re.S)
    assert block, "no secrets list in the serving task definition"
    found = re.findall(r'\{ name = "(\w+)", valueFrom = ([\w.]+) \}', block.group(1))
    return {name: _resolve("${" + ref + "}") for name, ref in found}


def _serving_env() -> dict[str, str]:
    """The serving container's plain `environment` list (secrets come from `secrets`)."""
    text = tfparse.load(tfparse.MODULES / "serving").text()
    block = re.search(r"environment = \[(.*?)\n\s*\]", text, re.S)
    assert block, "no environment list in the serving task definition"
    out = {}
    for name, value in re.findall(r'\{ name = "(\w+)", value = (.+?) \}', block.group(1)):
        value = value.strip()
        if value.startswith("jsonencode("):  # the CORS origins: var.cors_allowed_origins = []
            out[name] = "[]"
        elif value.startswith('"'):
            out[name] = _resolve(value.strip('"'))
        else:
            out[name] = _resolve("${" + value + "}")
    return out


@pytest.mark.parametrize(
    ("component", "function", "harness"),
    [
        ("ingest", "this", tf.weblog_processor_env),
        ("training", "monitor", tf.monitor_env),
        ("training", "promote", tf.promote_env),
    ],
)
def test_each_function_gets_terraforms_environment(
    component: str, function: str, harness: Any
) -> None:
    assert harness(RESOURCES) == _lambda_env(component, function)


def test_the_serving_task_gets_terraforms_environment_and_secrets() -> None:
    assert tf.serving_env(RESOURCES) == _serving_env()
    assert tf.serving_secrets(RESOURCES) == _serving_secrets()


def test_every_recloop_variable_terraform_sets_is_a_setting() -> None:
    names = set(_serving_env()) | set(_serving_secrets()) | set(_lambda_env("ingest", "this"))
    names |= set(_lambda_env("training", "monitor")) | set(_lambda_env("training", "promote"))
    fields = set(Settings.model_fields)
    settings = {n.removesuffix("_SECRET_ARN") for n in names if n.startswith("RECLOOP_")}
    unknown = [n for n in settings if n[8:].lower() not in fields]
    assert unknown == []
    # What the demo sets on top of Terraform is named, with the reason.
    assert all(name.startswith(("RECLOOP_", "AWS_")) for name in tf.DEMO_OVERRIDES)
