"""Third-party detectors behind the same :class:`~msda_widgets.engine.detector.Detector` API.

:func:`register_pyod` turns any PyOD detector (``pip install msda-widgets[pyod]``) into a model
name: ``Detector(model=name)`` fits it on the flattened windows of the scaled data, scores,
thresholds and explains it with the perturbation methods (``kernel_shap``, ``lime``: a PyOD
detector is not differentiable), and the dashboard lists it in its model menu (the menu reads the
catalogue). PyOD's own convention is kept: ``decision_function`` gives higher values for more
anomalous windows.

A fitted PyOD estimator is a pickled Python object, and msda_widgets model files never hold
pickles, so a detector built on one cannot be saved with ``Detector.save`` (it says so).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .models import MODELS, ModelSpec, register_model

__all__ = ["PyODModel", "register_pyod"]


class PyODModel(nn.Module):
    """A PyOD detector on flattened windows ``(B, L * S)``: ``forward`` ``(B, L, S) -> (B,)``
    returns its ``decision_function`` (no gradients)."""

    kind = "score"
    savable = False

    def __init__(self, factory: Callable[[], Any], n_sensors: int, lookback: int) -> None:
        super().__init__()
        self.factory, self.n_sensors, self.lookback = factory, int(n_sensors), int(lookback)
        self.estimator: Optional[Any] = None

    def extra_repr(self) -> str:
        return f"estimator={self.estimator if self.estimator is not None else self.factory!r}"

    def fit_windows(self, inputs: np.ndarray, seed: Optional[int] = None) -> None:
        windows = np.asarray(inputs, dtype=np.float64)
        if windows.ndim != 3 or len(windows) < 2:
            raise DataError(f"A PyOD detector needs at least 2 training windows; got {len(windows)}. Use more "
                            f"rows or a smaller lookback.")
        estimator = self.factory()
        if seed is not None and hasattr(estimator, "random_state") and getattr(estimator, "random_state") is None:
            estimator.random_state = int(seed)
        try:
            estimator.fit(windows.reshape(len(windows), -1))
        except ValueError as exc:
            raise ConfigError(f"The PyOD detector {type(estimator).__name__} cannot fit these "
                              f"{len(windows)} windows: {exc}") from None
        self.estimator = estimator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.estimator is None:
            raise ConfigError("This PyOD detector is not fitted.")
        flat = x.detach().double().cpu().numpy().reshape(len(x), -1)
        scores = np.asarray(self.estimator.decision_function(flat), dtype=np.float64)
        return torch.from_numpy(scores).to(dtype=x.dtype, device=x.device)


def register_pyod(name: str, factory: Callable[[], Any], *, label: Optional[str] = None,
                  description: Optional[str] = None, min_lookback: int = 1, replace: bool = False) -> None:
    """Make a PyOD detector available as ``Detector(model=name)`` and in the dashboard's menu.

    ``factory()`` returns a new, unfitted PyOD estimator, e.g. ``lambda: IForest(n_estimators=200)``
    or simply the class ``ECOD``. It must have ``fit(X)`` and ``decision_function(X)``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"A model name must be a non-empty string; got {name!r}.")
    if not callable(factory):
        raise ConfigError(f"factory must be a callable that returns a PyOD estimator; got {factory!r}.")
    probe = factory()
    if not (hasattr(probe, "fit") and hasattr(probe, "decision_function")):
        raise ConfigError(f"{type(probe).__name__} is not a PyOD-style detector: it needs fit(X) and "
                          f"decision_function(X).")
    if name in MODELS and not replace:
        raise ConfigError(f"A model named {name!r} is already registered; pass replace=True to replace it.")
    what = type(probe).__name__
    register_model(ModelSpec(
        name=name, kind="score", min_lookback=int(min_lookback),
        build=lambda n, c: PyODModel(factory, n, c.lookback),
        description=description or f"PyOD's {what} on each window (flattened); score = its decision function.",
        label=label or f"PyOD {what}", differentiable=False, family="adapter"), replace=replace)
