"""The project's exception types.

Every error a user can cause (a bad param, an unreadable file, a missing server) is raised as one of
these, with a message that names the file, field, value or URL and says what to do. The CLI prints
the message without a traceback and exits non-zero.
"""


class YoloxError(Exception):
    """Base class of the errors a user can cause and fix."""


class ConfigError(YoloxError):
    """A params file or value is invalid (unknown key, bad type, out of range)."""


class DataError(YoloxError):
    """A dataset cannot be read at all (missing folder, unreadable annotation file)."""


class AssetError(YoloxError):
    """A named dataset or weights file cannot be resolved (not in the mirror, offline, unknown name)."""


class CheckpointError(YoloxError):
    """A checkpoint does not fit the model it is loaded into, or cannot be read."""


class ExportError(YoloxError):
    """An exported model failed its check against PyTorch, or the exporter is unavailable."""


class TrackingError(YoloxError):
    """The MLflow tracking server or registry cannot be reached or refused an operation."""


class GateError(YoloxError):
    """A promotion was refused or cannot be decided (e.g. no evaluation on the champion's data)."""


class StageError(YoloxError):
    """A pipeline stage failed; the message names the stage and the cause (the champion is untouched)."""


class LaunchError(YoloxError):
    """Distributed training could not be started, or its job failed (torchrun's exit status, a Kubernetes
    job that failed or could not be submitted); the message says which node or pod and where its log is."""


class PreflightError(TrackingError):
    """The tracking store or model registry failed the check made before any work (unreachable, refusing,
    not writable, unknown scheme): the URI, the credentials or the server need fixing first, so running the
    same pipeline again unchanged would fail the same way (not retried)."""
