"""terraform/ against the AWS provider's own schema, pinned by the committed lock files.

The schema comes from @cdktf/provider-aws's `.jsii` manifest, the release generated from the
hashicorp/aws version that .terraform.lock.hcl selects (tests/infra/provider_schema.py). This
is what `terraform validate` would reject for unknown resource types, arguments, blocks and
attribute references; values and cross-argument rules are still only checked by `plan`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest
from provider_schema import PROVIDER, check_tree, ensure_schema, lock_versions, locked_version
from tfparse import ENVS, MODULES, TERRAFORM, load, module_dirs


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return ensure_schema()


def test_every_root_module_commits_a_lock_file_that_pins_the_aws_provider() -> None:
    locks = lock_versions()
    assert {p.parent for p in locks} == {ENVS / "dev", ENVS / "prod"}, locks
    assert locked_version()  # one version, the same in every root module
    for lock in locks:
        text = lock.read_text()
        assert re.search(r'"zh:[0-9a-f]{64}"', text), f"{lock}: no package checksums"


def _satisfies(version: str, constraint: str) -> bool:
    """Terraform's `~>`, `>=`, `<`, `=` constraints, comma-joined."""
    have = tuple(int(p) for p in version.split("."))
    for part in constraint.split(","):
        op, _, want_text = part.strip().partition(" ")
        if not want_text:
            op, want_text = "=", op
        want = tuple(int(p) for p in want_text.split("."))
        padded = want + (0,) * (3 - len(want))
        if op == "~>":
            upper = (*want[:-2], want[-2] + 1) if len(want) > 1 else (want[0] + 1,)
            ok = have >= padded and have[: len(upper)] < upper
        elif op == ">=":
            ok = have >= padded
        elif op == "<":
            ok = have < padded
        else:
            ok = have == padded
        if not ok:
            return False
    return True


def test_the_locked_version_satisfies_every_modules_constraint() -> None:
    version = locked_version()
    for root in [*module_dirs(), ENVS / "dev", ENVS / "prod"]:
        versions = load(root).files["versions.tf"]["terraform"][0]["required_providers"][0]
        if "aws" in versions:
            constraint = versions["aws"]["version"]
            assert _satisfies(version, constraint), f"{root.name}: {version} vs {constraint}"
    assert _satisfies("6.25.0", "~> 6.0") and not _satisfies("7.0.0", "~> 6.0")


def test_the_schema_is_built_from_the_locked_provider_version(schema: dict[str, Any]) -> None:
    assert schema["provider_version"] == locked_version()
    assert schema["package"].startswith("@cdktf/provider-aws@")
    assert len(schema["resource"]) > 1000 and len(schema["data"]) > 400
    task = schema["resource"]["aws_ecs_task_definition"]
    assert "skip_destroy" in task["args"] and "volume" in task["blocks"]


def test_terraform_matches_the_providers_schema(schema: dict[str, Any]) -> None:
    report = check_tree(TERRAFORM, schema)
    assert not report.problems, "\n".join(report.problems)
    assert report.checked_blocks > 150, report.checked_blocks
    assert report.checked_references > 200, report.checked_references


# --- the check can fail: seeded mistakes ------------------------------------------------------

SEEDED = [
    (
        "deregistration_delay = 30",
        "deregistration_delai = 30",
        "unknown argument 'deregistration_delai'",
    ),
    ("  health_check {\n    path", "  healthcheck {\n    path", "block 'healthcheck' is unknown"),
    ("aws_lb.this.arn_suffix", "aws_lb.this.arn_sufix", "has no attribute 'arn_sufix'"),
    (
        'resource "aws_lb_listener" "test"',
        'resource "aws_lb_listenr" "test"',
        "no such resource type",
    ),
    (
        'dynamic "cors_configuration"',
        'dynamic "cors_config"',
        "dynamic 'cors_config' is not a block",
    ),
    (
        "    enable_accept_encoding_gzip   = false",
        "    enable_accept_encoding_gz     = false",
        "unknown argument 'enable_accept_encoding_gz'",
    ),
    ("dns_entry[0].dns_name", "dns_entry[0].dns_nam", "has no attribute 'dns_nam'"),
]


@pytest.mark.parametrize(("old", "new", "expected"), SEEDED, ids=[s[2] for s in SEEDED])
def test_a_seeded_mistake_is_reported(
    schema: dict[str, Any], tmp_path: Path, old: str, new: str, expected: str
) -> None:
    # Only the module holding the seed is copied and checked: parsing all of terraform/ per
    # seed would take a minute.
    source = next((tf for tf in sorted(MODULES.rglob("*.tf")) if old in tf.read_text()), None)
    assert source is not None, f"the seed {old!r} is no longer in terraform/modules"
    copy = tmp_path / source.parent.name
    shutil.copytree(source.parent, copy)
    target = copy / source.name
    target.write_text(target.read_text().replace(old, new, 1))
    report = check_tree(copy, schema)
    assert any(expected in p for p in report.problems), report.problems


def test_a_misspelt_provider_argument_is_reported(schema: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "providers.tf").write_text(
        'provider "aws" {\n  alias  = "x"\n  regoin = "eu-west-1"\n'
        "  default_tags {\n    tags = {}\n  }\n}\n"
    )
    report = check_tree(tmp_path, schema)
    assert report.problems == [f"{tmp_path}/providers.tf: provider aws: unknown argument 'regoin'"]


def test_an_argument_written_as_a_block_is_reported(schema: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'resource "aws_sqs_queue" "q" {\n  name = "q"\n  tags {\n    a = "b"\n  }\n}\n'
    )
    report = check_tree(tmp_path, schema)
    assert any("block 'tags' is an argument" in p for p in report.problems), report.problems
    assert hcl2.loads((tmp_path / "main.tf").read_text())  # the file itself is valid HCL


def test_the_lock_files_are_what_the_check_reads() -> None:
    assert PROVIDER == "registry.terraform.io/hashicorp/aws"
    for module in MODULES.iterdir():
        assert not (module / ".terraform.lock.hcl").exists(), "lock files belong to root modules"
