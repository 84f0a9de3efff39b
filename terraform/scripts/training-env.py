"""Print `export RECLOOP_...=...` lines from the monitor Lambda's configuration.

The scheduled GitLab pipeline launches a training job with exactly the settings the deployed
loop uses (lake, registry, SageMaker role and image), read from the monitor function that
Terraform configured, so CI keeps no second copy of them.
Usage: eval "$(python terraform/scripts/training-env.py FUNCTION_NAME)"
"""

from __future__ import annotations

import shlex
import sys

import boto3


def main(function_name: str) -> int:
    """Write one export line per RECLOOP_* variable of the function to stdout."""
    config = boto3.client("lambda").get_function_configuration(FunctionName=function_name)
    variables = config.get("Environment", {}).get("Variables", {})
    wanted = {k: v for k, v in variables.items() if k.startswith("RECLOOP_")}
    if not wanted:
        sys.stderr.write(f"{function_name} has no RECLOOP_* variables\n")
        return 2
    for key, value in sorted(wanted.items()):
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
