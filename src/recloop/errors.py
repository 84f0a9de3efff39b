"""The exception hierarchy: one root, a subclass per failure a caller can act on."""


class RecloopError(Exception):
    """Root of every error recloop raises on purpose."""


class ConfigError(RecloopError):
    """A setting is missing, malformed or unsafe for the environment."""


class LakeError(RecloopError):
    """The data lake could not be read or written."""


class TransientStoreError(LakeError):
    """A write failed for a reason that a retry may cure (throttling, 5xx, timeouts)."""


class InvalidEventError(RecloopError):
    """An input record is not a valid event; it is quarantined with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ImportDataError(RecloopError):
    """An import source (CSV, MovieLens folder) is missing or malformed."""


class NotFoundError(RecloopError):
    """A named thing (model version, run, user, item) does not exist."""
