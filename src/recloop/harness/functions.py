"""A Lambda function played by a long-lived process: a warm container with its own environment.

The handler file is the one deployed (lambdas/<name>/handler.py); the environment is the one
Terraform gives the function (harness.terraform) plus the endpoint of the AWS APIs. Invocations
are synchronous and one at a time (one container); errors come back as `FunctionError`, as a
synchronous Invoke reports a function error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from recloop.errors import RecloopError
from recloop.harness.processes import die_with_parent


class FunctionError(RecloopError):
    """The handler raised: Lambda's function error (the event source retries)."""


class LambdaFunction:
    """One function's container; `invoke(event)` returns the handler's result."""

    def __init__(
        self,
        name: str,
        handler: Path,
        env: Mapping[str, str],
        log_path: Path,
        start_timeout: float = 120.0,
    ) -> None:
        self.name = name
        self.invocations = 0
        self.errors = 0
        self._lock = threading.Lock()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "recloop.harness.runtime", str(handler)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(env),
            text=True,
            preexec_fn=die_with_parent,
        )
        ready = self._read(start_timeout)
        if not ready.get("ready"):
            raise FunctionError(f"function {name} did not start: {ready}")

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self._process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise FunctionError(
                f"function {self.name} gave no answer in {timeout:.0f} s "
                f"(exit code {self._process.poll()}; see {self._log.name})"
            )
        data: dict[str, Any] = json.loads(result[0])
        return data

    def invoke(self, event: dict[str, Any], timeout: float = 900.0) -> Any:
        """Run the handler on `event`; its result, or FunctionError when it raised."""
        with self._lock:
            assert self._process.stdin is not None
            started = time.monotonic()
            self._process.stdin.write(json.dumps(event, default=str) + "\n")
            self._process.stdin.flush()
            response = self._read(timeout)
            self.invocations += 1
            if not response.get("ok"):
                self.errors += 1
                raise FunctionError(
                    f"{self.name}: {response.get('error')}: {response.get('message')} "
                    f"(after {time.monotonic() - started:.1f} s)"
                )
            return response.get("result")

    def close(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()
