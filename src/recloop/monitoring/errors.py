"""Errors of the monitoring package."""

from recloop.errors import RecloopError


class MonitorError(RecloopError):
    """A monitor input (a log, a window, a model description) is missing or malformed."""


class LogConflictError(MonitorError):
    """An append to a shared JSON-lines log lost the race too many times; retry later."""
