"""The loop's errors."""

from recloop.errors import RecloopError


class LoopError(RecloopError):
    """The retrain loop cannot do what it was asked (too little data, no champion, ...)."""
