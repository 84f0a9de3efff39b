"""CLI start-up: how long `recloop --help` and friends take before doing anything.

Commands: `recloop --help`, `recloop lake summary --help`, `recloop train --help`, and one that
does work, `recloop lake summary --json` on an empty file:// lake (it needs pyarrow, and only
the lake). Every command is run in a fresh subprocess (the real console script when it is
installed, else `python -c "from recloop.cli import main; main()"`), alternating with a
baseline of `python -c pass` in the same run, N rounds; CPU seconds (user + system of the
child, from getrusage) and wall seconds, best of N. One extra run per command under
`-X importtime` lists which heavy libraries it imported.

Usage: flock /tmp/recloop-bench.lock .venv/bin/python bench/cli_startup.py [--rounds 7]
       [--src DIR]   (import recloop from DIR, e.g. an older commit's src/, via PYTHONPATH)
The last line is one JSON object; `<name>_ratio` = that command's CPU seconds / the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = (
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
    "pydantic",
)
HELP_COMMANDS = {
    "help": ["--help"],
    "lake_summary_help": ["lake", "summary", "--help"],
    "train_help": ["train", "--help"],
}


def recloop_argv() -> list[str]:
    """How a user starts recloop: the console script beside this interpreter, if installed."""
    script = Path(sys.executable).with_name("recloop")
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from recloop.cli import main; main()"]


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one fresh subprocess."""
    cpu, wall = child_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child_cpu() - cpu, time.perf_counter() - wall


def heavy_imports(args: list[str]) -> list[str]:
    """The HEAVY top-level packages a command imports, from `python -X importtime`."""
    base = recloop_argv()
    argv = [base[0], "-X", "importtime", *base[1:], *args]
    err = subprocess.run(argv, check=True, capture_output=True, text=True).stderr
    names = {
        line.rpartition("|")[2].strip().split(".")[0]
        for line in err.splitlines()
        if line.startswith("import time:")
    }
    return sorted(names & set(HEAVY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="Runs of each command (best of).")
    parser.add_argument("--src", type=Path, help="Import recloop from this folder instead.")
    opts = parser.parse_args()
    if opts.src is not None:  # inherited by every subprocess; ahead of the installed package
        os.environ["PYTHONPATH"] = str(opts.src.resolve())
    with tempfile.TemporaryDirectory(prefix="recloop-bench-") as tmp:
        lake = ["lake", "summary", "--json", "--lake-uri", Path(tmp).as_uri()]
        print(json.dumps(measure({**HELP_COMMANDS, "lake_summary": lake}, opts.rounds)))


def measure(commands: dict[str, list[str]], rounds: int) -> dict[str, object]:
    argvs = {"baseline": [sys.executable, "-c", "pass"]}
    argvs |= {name: [*recloop_argv(), *args] for name, args in commands.items()}
    cpu: dict[str, list[float]] = {name: [] for name in argvs}
    wall: dict[str, list[float]] = {name: [] for name in argvs}
    for argv in argvs.values():  # warm the page cache; not timed
        run_once(argv)
    for _ in range(rounds):
        for name, argv in argvs.items():
            c, w = run_once(argv)
            cpu[name].append(c)
            wall[name].append(w)

    figures: dict[str, object] = {
        "rounds": rounds,
        "argv": " ".join(recloop_argv()[1:]),
        "pythonpath": os.environ.get("PYTHONPATH"),
    }
    base = min(cpu["baseline"])
    for name in argvs:
        best = min(cpu[name])
        figures[f"{name}_cpu_s"] = round(best, 3)
        figures[f"{name}_wall_s"] = round(min(wall[name]), 3)
        if name != "baseline":
            figures[f"{name}_ratio"] = round(best / base, 2)
            print(f"{name:>20}: {best:.3f} CPU s ({best / base:.1f}x python -c pass)")
    print(f"{'baseline':>20}: {base:.3f} CPU s")
    figures["heavy_imported"] = {name: heavy_imports(args) for name, args in commands.items()}
    return figures


if __name__ == "__main__":
    main()
