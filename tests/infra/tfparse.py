"""Terraform configuration as plain Python data (python-hcl2), for the infra tests.

No Terraform binary runs on these machines, so the tests read the .tf files themselves: string
values come back without their quotes, expressions as "${...}" strings, blocks as lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = TERRAFORM / "modules"
ENVS = TERRAFORM / "envs"

_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


@dataclass
class Config:
    """One Terraform root or child module: its files parsed and merged by block type."""

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def blocks(self, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(file name, block body) of every top-level block of `kind` (variable, output, ...)."""
        for name, parsed in self.files.items():
            for entry in parsed.get(kind, []):
                yield name, entry

    def labelled(self, kind: str) -> dict[str, dict[str, Any]]:
        """Single-label blocks (variable, output, module) by label."""
        out: dict[str, dict[str, Any]] = {}
        for _, entry in self.blocks(kind):
            out.update(entry)
        return out

    def resources(self, rtype: str, kind: str = "resource") -> dict[str, dict[str, Any]]:
        """Resources (or data sources) of one type, by name."""
        out: dict[str, dict[str, Any]] = {}
        for _, entry in self.blocks(kind):
            for found_type, named in entry.items():
                if found_type == rtype:
                    out.update(named)
        return out

    def all_resources(self, kind: str = "resource") -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(type, name, body) of every resource (or data source)."""
        for _, entry in self.blocks(kind):
            for rtype, named in entry.items():
                for name, body in named.items():
                    yield rtype, name, body

    def locals(self) -> dict[str, Any]:
        """All locals of the module."""
        out: dict[str, Any] = {}
        for _, entry in self.blocks("locals"):
            out.update(entry)
        return out

    def text(self) -> str:
        """The module's source, all files concatenated."""
        return "\n".join((self.path / name).read_text() for name in sorted(self.files))


@cache
def load(path: Path) -> Config:
    """Parse every .tf file of one module folder."""
    config = Config(path)
    for tf in sorted(path.glob("*.tf")):
        with tf.open() as handle:
            config.files[tf.name] = hcl2.load(handle, serialization_options=_OPTIONS)
    return config


def module_dirs() -> list[Path]:
    """terraform/modules/<component> folders."""
    return sorted(p for p in MODULES.iterdir() if p.is_dir())


def env_dirs() -> list[Path]:
    """terraform/envs/<env> folders."""
    return sorted(p for p in ENVS.iterdir() if p.is_dir())


def tf_files() -> list[Path]:
    """Every .tf file in terraform/."""
    return sorted(TERRAFORM.rglob("*.tf"))


def first(blocks: Any) -> dict[str, Any]:
    """The single nested block of a block list (hcl2 returns nested blocks as lists)."""
    assert isinstance(blocks, list) and len(blocks) == 1, blocks
    item = blocks[0]
    assert isinstance(item, dict)
    return item


def resolve(value: Any, variables: dict[str, Any], env_args: dict[str, Any] | None = None) -> Any:
    """A `${var.x}` value resolved to what an environment passes, else the variable's default."""
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{var\.(\w+)\}", value)
        if match:
            name = match.group(1)
            if env_args is not None and name in env_args:
                return env_args[name]
            return variables[name].get("default")
    return value
