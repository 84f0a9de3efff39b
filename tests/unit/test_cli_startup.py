"""CLI start-up: help loads no heavy library, and a command loads only what it runs.

Typer builds every command's signature for any `recloop ...` invocation, so one area module
importing numpy at module level makes every command (and every Lambda or loop subprocess that
shells out to recloop) pay for it. Each check runs in a fresh interpreter: this test process has
long since imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from recloop.cli.sim import LineFormat

# Top-level packages that cost tens to hundreds of milliseconds to import. Not pydantic: Typer
# (0.29) coerces every parsed option through a pydantic TypeAdapter, so any subcommand loads it.
HEAVY = {
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "sklearn",
    "implicit",
    "fastapi",
    "uvicorn",
    "boto3",
    "botocore",
    "sagemaker",
    "matplotlib",
}

# Runs recloop's console-script entry point on the given arguments, then prints the top-level
# packages loaded as the last stdout line.
_ENTRY = """
import json, sys
from recloop.cli import main
code = None
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""

# Walks the whole command tree and asks each command for --help in one interpreter, recording
# after each which heavy packages are loaded (so the first offender is the one named).
_WALK = """
import json, sys
import typer.main
from typer.testing import CliRunner
from recloop.cli import app

heavy = set(json.loads(sys.argv[1]))
seen = {}

def walk(command, path):
    result = CliRunner().invoke(app, [*path, "--help"])
    loaded = sorted({m.split(".")[0] for m in sys.modules} & heavy)
    seen[" ".join(path)] = {"exit": result.exit_code, "heavy": loaded}
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        walk(sub, [*path, name])

walk(typer.main.get_command(app), [])
print(json.dumps(seen))
"""


def _run(code: str, *args: str) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    *output, last = done.stdout.splitlines()
    return "\n".join(output), json.loads(last)


def test_recloop_help_lists_every_command_without_importing_a_heavy_library() -> None:
    output, probe = _run(_ENTRY, "--help")

    assert probe["exit"] == 0
    assert sorted(HEAVY & set(probe["modules"])) == []
    for name in ("serve", "ingest", "train", "demo", "dashboard", "lake", "sim", "monitor"):
        assert name in output, f"{name} missing from recloop --help"


def test_no_command_or_group_help_in_the_tree_imports_a_heavy_library() -> None:
    _, seen = _run(_WALK, json.dumps(sorted(HEAVY)))

    assert {"lake summary", "sim weblogs", "train", "runs reproduce", "loop history"} <= set(seen)
    assert {path: v for path, v in seen.items() if v != {"exit": 0, "heavy": []}} == {}


def test_lake_summary_loads_arrow_but_no_training_serving_or_aws_library(tmp_path: Path) -> None:
    uri = (tmp_path / "lake").as_uri()
    output, probe = _run(_ENTRY, "lake", "summary", "--json", "--lake-uri", uri)
    modules = set(probe["modules"])

    assert probe["exit"] == 0
    assert json.loads(output.splitlines()[-1])["rows"] == 0
    assert "pyarrow" in modules
    unneeded = {"scipy", "sklearn", "implicit", "fastapi", "uvicorn", "boto3", "sagemaker"}
    assert sorted(unneeded & modules) == []


def test_the_sim_format_choices_are_the_simulators_formats() -> None:
    from recloop.sim import Format

    assert [f.value for f in LineFormat] == [f.value for f in Format]
