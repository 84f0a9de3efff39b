"""Timeouts and circuit breakers around every backend call.

A backend that does network I/O (`blocking_io`) is called in a worker thread under a deadline;
an embedded one is called inline and enforces its own deadline (SQLite's progress handler), since
a thread hop would cost more than the call. After `failure_threshold` consecutive failures the
breaker opens: calls fail at once for `reset_after` seconds, then one probe call is let through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

from recloop.serving.errors import BackendError

P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Stops calling a dead backend; probes it again after `reset_after` seconds."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """True when a call may go through (closed, or the one probe of a half-open breaker)."""
        if self._opened_at is None:  # closed: no lock needed to say yes (two calls a request)
            return True
        with self._lock:
            state = self.state
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        if not self._failures and self._opened_at is None and not self._probing:
            return  # nothing to reset: the usual case, without the lock
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._opened_at is not None or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()


class Guard:
    """One backend's timeout and breaker: `await guard.call(fn, *args)`."""

    def __init__(
        self,
        name: str,
        timeout_s: float,
        blocking: bool,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.blocking = blocking
        self.breaker = breaker or CircuitBreaker()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn`; BackendError when the breaker is open, the call fails or times out."""
        if not self.breaker.allow():
            raise BackendError(self.name, "circuit open")
        try:
            if self.blocking:
                with anyio.fail_after(self.timeout_s):
                    result = await anyio.to_thread.run_sync(
                        lambda: fn(*args, **kwargs), abandon_on_cancel=True
                    )
            else:
                result = fn(*args, **kwargs)
        except TimeoutError as exc:
            self.breaker.failure()
            raise BackendError(
                self.name, f"timed out after {self.timeout_s * 1000:.0f} ms"
            ) from exc
        except BackendError:
            self.breaker.failure()
            raise
        except Exception as exc:  # any driver error is a backend failure, never a 500
            self.breaker.failure()
            raise BackendError(self.name, f"{type(exc).__name__}: {exc}") from exc
        self.breaker.success()
        return result
