"""Serving's errors; app.py maps each to one HTTP status and the one error body."""

from __future__ import annotations

from recloop.errors import RecloopError


class ServingError(RecloopError):
    """Root of the errors the API raises on purpose."""


class BackendError(ServingError):
    """A backend (feature store, candidate source, event sink) failed, timed out or is open."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend}: {detail}")
        self.backend = backend
        self.detail = detail


class SinkFullError(ServingError):
    """The event queue is full: the caller should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the event queue is full; retry later")
        self.retry_after = retry_after


class ModelNotReadyError(ServingError):
    """No model has been loaded yet (nothing approved, or the first load is in progress)."""


class UnauthorizedError(ServingError):
    """The request lacks the configured bearer token."""


class InvalidRequestError(ServingError):
    """Input that passed the schema but not a cross-field rule; a 422 like schema errors."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
