"""Terraform version rules: the CI image runs every feature the code uses; required_version says so.

The 1.9 image could not even `init`: the S3 backend's `use_lockfile` needs Terraform 1.10, while
required_version and the docs said 1.6. The feature table below names what each language or
backend feature needs (Terraform's changelog); the needed version is the highest of those the
code uses, and the CI image, every required_version lower bound and docs/deploy.md must agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from tfparse import REPO, TERRAFORM, tf_files

# (pattern in .tf text, minimum Terraform version, what it is)
FEATURES: list[tuple[str, tuple[int, int], str]] = [
    (r"^\s*moved\s*\{", (1, 1), "moved blocks"),
    (r"\boptional\(", (1, 3), "optional object attributes"),
    (r"\bterraform_data\b", (1, 4), "terraform_data"),
    (r"^\s*import\s*\{", (1, 5), "import blocks"),
    (r"^\s*check\s+\"", (1, 5), "check blocks"),
    (r"^\s*removed\s*\{", (1, 7), "removed blocks"),
    (r"\bprovider::", (1, 8), "provider-defined functions"),
    (r"\btemplatestring\(", (1, 9), "templatestring"),
    (r"^\s*use_lockfile\s*=\s*true", (1, 10), "S3 backend use_lockfile"),
    (r"^\s*ephemeral\s+\"", (1, 10), "ephemeral resources"),
    (r"^\s*\w+_wo(_version)?\s*=", (1, 11), "write-only arguments"),
]


def needed_version(texts: list[str]) -> tuple[tuple[int, int], list[str]]:
    """The highest minimum version among the features the texts use, and those features."""
    needed, used = (1, 0), []
    for pattern, version, name in FEATURES:
        if any(re.search(pattern, text, re.M) for text in texts):
            used.append(f"{name} ({version[0]}.{version[1]})")
            needed = max(needed, version)
    return needed, used


def lower_bound(required_version: str) -> tuple[int, int]:
    match = re.search(r">=\s*(\d+)\.(\d+)", required_version)
    assert match, f"required_version {required_version!r} has no >= lower bound"
    return int(match.group(1)), int(match.group(2))


def ci_terraform_version() -> tuple[int, int]:
    pipeline = YAML(typ="safe").load((REPO / ".gitlab-ci.yml").read_text())
    image = pipeline["variables"]["TERRAFORM_IMAGE"]
    match = re.fullmatch(r"hashicorp/terraform:(\d+)\.(\d+)\.\d+", image)
    assert match, f"pin the CI's Terraform image to a patch release, not {image!r}"
    return int(match.group(1)), int(match.group(2))


def version_problems(
    texts: list[str], required_versions: list[str], ci: tuple[int, int]
) -> list[str]:
    needed, used = needed_version(texts)
    problems = []
    if ci < needed:
        problems.append(f"CI image {ci} is older than {needed} needed by {used}")
    for required in required_versions:
        if lower_bound(required) != needed:
            problems.append(f"required_version {required!r} does not say {needed} ({used})")
    return problems


def _required_versions() -> list[str]:
    found = []
    for path in sorted(TERRAFORM.rglob("versions.tf")):
        match = re.search(r'required_version\s*=\s*"([^"]+)"', path.read_text())
        assert match, f"{path} has no required_version"
        found.append(match.group(1))
    return found


def test_ci_image_and_required_version_match_the_features_used() -> None:
    texts = [p.read_text() for p in tf_files()]
    problems = version_problems(texts, _required_versions(), ci_terraform_version())
    assert not problems, "\n".join(problems)
    needed, used = needed_version(texts)
    assert needed >= (1, 10), used  # the backend's use_lockfile is in use


def test_the_docs_state_the_same_minimum_version() -> None:
    needed, _ = needed_version([p.read_text() for p in tf_files()])
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert f"Terraform >= {needed[0]}.{needed[1]}" in docs


@pytest.mark.parametrize(
    ("tf", "required", "ci", "expected"),
    [
        ('backend "s3" {\n  use_lockfile = true\n}\n', ">= 1.6.0, < 2.0.0", (1, 9), 2),
        ('backend "s3" {\n  use_lockfile = true\n}\n', ">= 1.10.0, < 2.0.0", (1, 9), 1),
        ('backend "s3" {\n  use_lockfile = true\n}\n', ">= 1.10.0, < 2.0.0", (1, 10), 0),
        ('x {\n  password_wo = "a"\n}\n', ">= 1.10.0", (1, 10), 2),
    ],
)
def test_the_rules_catch_the_original_mismatch(
    tf: str, required: str, ci: tuple[int, int], expected: int
) -> None:
    """The state this issue found (use_lockfile, required 1.6, CI 1.9) fails both rules."""
    assert len(version_problems([tf], [required], ci)) == expected


def test_every_versions_file_is_found() -> None:
    assert len(_required_versions()) == len(list(Path(TERRAFORM).rglob("versions.tf"))) >= 10
