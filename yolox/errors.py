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


class DiskFullError(CheckpointError):
    """A checkpoint could not be written for lack of space; the message names the file, about how much it
    needs and how much is free. The previous checkpoint is kept and no partial file is left behind."""


class Interrupted(BaseException):
    """A run stopped by SIGINT (Ctrl-C) or SIGTERM, after saving what lets it continue.

    ``signum``: the signal; ``checkpoint``: the resumable checkpoint written (None when nothing was
    trained yet or the process only asked a launched job to stop); ``detail``: where in the run it
    stopped (e.g. ``epoch 2/3, step 2/3``). ``exit_code`` is the shell's ``128 + signum`` (130, 143).

    A BaseException like KeyboardInterrupt, so that nothing treats it as a failure to retry or wrap
    (``except Exception`` lets it through, a Prefect task is not retried); not a KeyboardInterrupt,
    because typer turns those into a bare exit status and the CLI must print where the checkpoint is
    and how to resume.
    """

    def __init__(self, signum: int, checkpoint: object = None, detail: str = "") -> None:
        super().__init__(signum, checkpoint, detail)
        self.signum, self.checkpoint, self.detail = int(signum), checkpoint, detail

    @property
    def signal_name(self) -> str:
        import signal

        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        where = f" ({self.detail})" if self.detail else ""
        saved = f": resumable checkpoint {self.checkpoint}{where}" if self.checkpoint else where
        return f"interrupted by {self.signal_name}{saved}"


class PreflightError(TrackingError):
    """The tracking store or model registry failed the check made before any work (unreachable, refusing,
    not writable, unknown scheme): the URI, the credentials or the server need fixing first, so running the
    same pipeline again unchanged would fail the same way (not retried)."""
