"""The one error family of PAM Explorer: everything a user can cause raises a :class:`PamError`.

The CLI prints a PamError as ``error: <message>`` (exit 2) and the dashboard shows it with
``st.error``; any other exception is a bug and keeps its traceback. Every class subclasses
ValueError (and DataMissing also FileNotFoundError), so ``except ValueError`` keeps working.
A message says what was wrong (the value and where), what is allowed, and how to fix it.
"""
from __future__ import annotations


class PamError(ValueError):
    """Base class: an error the user can fix (bad input, settings, files or structure)."""


class ConfigError(PamError):
    """A setting, argument or name is invalid ("Class.field: must be ..., got ...")."""


class StructureError(PamError):
    """A grouping, task set or network cannot be merged, built or run as asked."""


class DataError(PamError):
    """Input data (a file's content or a tensor) is malformed."""


class DataMissing(PamError, FileNotFoundError):
    """A data set, checkpoint or run file is not where it should be (the message says where)."""


class CheckpointMismatch(PamError):
    """The checkpoint's tensors do not fit the architecture."""


class ExportError(PamError):
    """A file is not a readable PAM Explorer export."""


class QueueFull(PamError):
    """More than MAX_QUEUED background runs would be waiting."""


class RunConflict(PamError):
    """An output directory holds a run with a different configuration."""


class JobsFailed(PamError):
    """Jobs of a sweep failed (each retried once); the rest is kept, a rerun retries them."""


__all__ = ["PamError", "ConfigError", "StructureError", "DataError", "DataMissing", "CheckpointMismatch",
           "ExportError", "QueueFull", "RunConflict", "JobsFailed"]
