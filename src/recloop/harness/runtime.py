"""The function side of `functions.LambdaFunction`: one handler in a process, events on stdin.

    python -m recloop.harness.runtime lambdas/monitor/handler.py

Each stdin line is an event (JSON); each response line on the original stdout is
{"ok": true, "result": ...} or {"ok": false, "error": type, "message": ...}. Whatever the
handler prints (EMF, logs) goes to stderr, which the parent keeps as the function's log.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any


class Context:
    """The parts of Lambda's context object a handler may read."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.aws_request_id = uuid.uuid4().hex
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def main(argv: list[str]) -> int:
    path = Path(argv[1])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's prints go to the log, not into the response channel
    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_handler", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        event = json.loads(line)
        response: dict[str, Any]
        try:
            result = module.lambda_handler(event, Context(path.parent.name))
            response = {"ok": True, "result": result}
        except Exception as exc:  # a function error: Lambda reports it to the caller
            traceback.print_exc()
            response = {"ok": False, "error": type(exc).__name__, "message": str(exc)[:2000]}
        sys.stderr.flush()
        out.write(json.dumps(response, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
