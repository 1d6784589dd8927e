"""msda_widgets: find and understand anomalies in multi-sensor time series in Jupyter.

Public names are imported lazily so that ``import msda_widgets`` is fast and does not load
torch, shap or the widget libraries until they are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "Detector": "msda_widgets.engine.detector",
    "Detection": "msda_widgets.engine.detector",
    "load_csv": "msda_widgets.engine.data",
    "CancelToken": "msda_widgets.engine.training",
    "DataConfig": "msda_widgets.config",
    "ModelConfig": "msda_widgets.config",
    "TrainConfig": "msda_widgets.config",
    "ScoreConfig": "msda_widgets.config",
    "DetectorConfig": "msda_widgets.config",
    "DataError": "msda_widgets.errors",
    "ConfigError": "msda_widgets.errors",
    "NotFittedError": "msda_widgets.errors",
    "ModelFileError": "msda_widgets.errors",
    "TrainingError": "msda_widgets.errors",
    "MsdaError": "msda_widgets.errors",
    "Dashboard": "msda_widgets.app.dashboard",
    "profile_sensors": "msda_widgets.engine.profile",
    "SensorProfile": "msda_widgets.engine.profile",
    "evaluate": "msda_widgets.engine.metrics",
    "Evaluation": "msda_widgets.engine.metrics",
}
_SUBMODULES = {"datasets", "engine", "config", "errors", "app"}

__all__ = sorted([*_LAZY, *_SUBMODULES, "__version__"])

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, engine
    from .config import DataConfig, DetectorConfig, ModelConfig, ScoreConfig, TrainConfig
    from .engine.data import load_csv
    from .engine.detector import Detection, Detector
    from .engine.profile import SensorProfile, profile_sensors
    from .engine.metrics import Evaluation, evaluate
    from .engine.training import CancelToken
    from .errors import ConfigError, DataError, ModelFileError, MsdaError, NotFittedError, TrainingError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"msda_widgets.{name}")
    else:
        raise AttributeError(f"module 'msda_widgets' has no attribute {name!r}")
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext msda_widgets`` registers the ``%msda`` magic (see :mod:`msda_widgets.magics`)."""
    from .magics import load_ipython_extension as _load
    _load(ipython)


def __dir__() -> list[str]:
    return __all__
