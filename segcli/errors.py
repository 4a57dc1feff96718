"""One error base class; the CLI edge turns any SegcliError into one line and a non-zero exit."""

__all__ = ["SegcliError", "UnknownNameError", "InputImageError", "OutputError", "CheckpointError",
           "ModelOutputError", "ChecksumMismatchError", "DownloadError", "MissingDependencyError",
           "DeviceError", "DatasetError", "ConfigurationError", "SegcliWarning", "SyntheticScenesWarning"]


class SegcliError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do next, in the library's
    terms (argument names such as `max_pixels`, files, models), so Python callers can act on it.

    `hint`, when given, says what to do on the command line ("raise it with --max-pixels"): the CLI edge
    adds it to the message (`with_hint`), a Python caller reads it only if it wants to.
    """

    exit_code = 1

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint


def with_hint(exc: object) -> str:
    """The message as a command-line user reads it: the error's (or warning's, or refusal's) text, then its
    command-line hint, if any."""
    hint = getattr(exc, "hint", None)
    return f"{exc}; {hint}" if hint else str(exc)


class UnknownNameError(SegcliError):
    """A model, checkpoint or option value that segcli does not know."""


class InputImageError(SegcliError):
    """An input image that cannot be read or decoded."""


class OutputError(SegcliError):
    """An output that cannot be written (exists, not writable, disk full)."""


class CheckpointError(SegcliError):
    """A checkpoint that is missing, corrupt, or does not fit the model."""


class ModelOutputError(CheckpointError):
    """A model whose logits are not finite (NaN/inf weights, or fp16 overflow): no image can be segmented,
    so the whole run stops (it is not one image's failure)."""


class ChecksumMismatchError(CheckpointError):
    """A file whose SHA-256 differs from the one recorded for it."""


class DownloadError(CheckpointError):
    """A download that failed or was interrupted."""


class MissingDependencyError(SegcliError):
    """An optional dependency (e.g. pydensecrf) is not installed."""


class DeviceError(SegcliError):
    """A device or precision that is not available here."""


class DatasetError(SegcliError):
    """A dataset folder that does not have the expected layout."""


class ConfigurationError(SegcliError):
    """An environment variable or folder segcli is told to use that cannot be used (e.g. SEGCLI_HOME)."""


class SegcliWarning(UserWarning):
    """Something a user should know that does not stop the run. As with SegcliError, the message is in the
    library's terms (what Python's warnings show) and `hint` says what to do on the command line: warn with an
    instance, `warnings.warn(SomeWarning(message, hint=...))`; the CLI prints `Warning: <message>; <hint>`."""

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        self.hint = hint


class SyntheticScenesWarning(SegcliWarning):
    """A checkpoint trained only on segcli's synthetic scenes is in use (it does not segment photographs)."""
