"""Exceptions raised by msda_widgets.

Every refusal is an exception with a message that names the column, row or setting involved
and says what to do; nothing is printed and nothing is silently turned into ``None``.
"""

from __future__ import annotations

__all__ = [
    "MsdaError",
    "DataError",
    "ConfigError",
    "NotFittedError",
    "ModelFileError",
    "TrainingError",
]


class MsdaError(Exception):
    """Base class of every error raised on purpose by msda_widgets."""


class DataError(MsdaError, ValueError):
    """The data cannot be used as given; the message says which column/row and what to do."""


class ConfigError(MsdaError, ValueError):
    """A setting is unknown or out of range."""


class NotFittedError(MsdaError, RuntimeError):
    """A fitted-only method (score, predict, explain, save) was called before ``fit``."""


class ModelFileError(MsdaError, ValueError):
    """A saved model file is not a valid msda_widgets bundle (foreign, tampered, truncated...)."""


class TrainingError(MsdaError, RuntimeError):
    """Training could not produce a usable model (e.g. the loss diverged in the first epoch)."""
