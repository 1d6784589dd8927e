"""The one definition of a detector's anomaly score: :class:`ScoreModule`.

``Detector.detect`` scores windows through this module and every explanation method
differentiates (or perturbs) the very same module, so "what the detector says" and "what the
explanation explains" cannot drift apart.

Input: windows in the :class:`~msda_widgets.engine.layout.WindowLayout` ``(B, T, S)`` of scaled
values, ending at the judged row. Output: ``(B,)`` scores. For a ``forecast`` or ``reconstruct``
model the score is built from the per-sensor *error* ``e`` at the judged row:

* ``forecast``: ``e = x[:, -1] - model(x[:, :-1])``;
* ``reconstruct`` with ``reduction="last"``: ``e = x[:, -1] - model(x)[:, -1]``;
* ``reconstruct`` with ``reduction="window"``: ``|e| = sqrt(mean over the window of the squared
  error)``.

Each sensor's error is divided by ``error_scale`` (its spread on normal held-out data, when the
detector standardises residuals; ``1`` otherwise). The ``l2`` score is ``||e||`` and a sensor's
contribution is ``e_s**2`` (so ``score**2`` is the sum of the contributions); the
``mahalanobis`` score is the distance of ``e`` under the training errors' covariance. A
``score`` model (a black box such as an isolation forest) maps the window straight to the score
and has no per-sensor errors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .layout import KINDS, WindowLayout

__all__ = ["ScoreModule", "Scoring", "eval_mode", "TINY"]

TINY = 1e-30  # keeps sqrt differentiable at an exactly zero error


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode (no dropout) and put back any module that was training."""
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


class ScoreModule(nn.Module):
    """A detector's anomaly score as a module: ``(B, T, S) -> (B,)`` (see the module docstring).

    The network is always evaluated in eval mode (modules that were training are put back). The
    Mahalanobis statistics and the error scale are float64 buffers, like the detector's own
    arithmetic. ``scores64`` gives the score in float64 (what ``Detector.detect`` reports);
    ``forward`` the same in the input's dtype (what explanations differentiate).
    """

    def __init__(self, model: nn.Module, kind: str, score: str = "l2", reduction: str = "last",
                 error_mean: Optional[np.ndarray] = None, error_precision: Optional[np.ndarray] = None,
                 error_scale: Optional[np.ndarray] = None):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}.")
        if score == "mahalanobis" and (error_mean is None or error_precision is None):
            raise ConfigError("The Mahalanobis score needs the training errors' mean and precision.")
        if kind == "score" and score == "mahalanobis":
            raise ConfigError("A model that outputs its own score has no error vector, so the Mahalanobis "
                              "score does not apply to it; use score='l2'.")
        self.model = model
        self.kind, self.score, self.reduction = kind, score, reduction
        if score == "mahalanobis":
            self.register_buffer("error_mean", torch.as_tensor(np.asarray(error_mean, dtype=np.float64)))
            self.register_buffer("error_precision", torch.as_tensor(np.asarray(error_precision, dtype=np.float64)))
        scale = None if error_scale is None else torch.as_tensor(np.asarray(error_scale, dtype=np.float32))
        self.register_buffer("error_scale", scale)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, score={self.score!r}, reduction={self.reduction!r}"

    @property
    def has_errors(self) -> bool:
        """Whether the score is built from per-sensor errors (every kind but ``score``)."""
        return self.kind != "score"

    def _check_errors(self) -> None:
        if not self.has_errors:
            raise ConfigError("This model outputs its own score and has no per-sensor errors; use a "
                              "perturbation method (kernel_shap, lime) to see which sensors matter.")

    # -- the error at the judged step -------------------------------------------------------------
    def _raw(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(squared error ``(B, S)``, signed error ``(B, S)`` or None for ``window``), unscaled."""
        with eval_mode(self.model):
            if self.kind == "forecast":
                err = x[:, -1] - self.model(x[:, :-1])
                return err.square(), err
            if self.reduction == "last":
                err = x[:, -1] - self.model(x)[:, -1]
                return err.square(), err
            return (x - self.model(x)).square().mean(dim=1), None

    def raw_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(squared error ``(B, S)``, signed error ``(B, S)``, or None for the ``window``
        reduction) at the judged row, before the error scale."""
        self._check_errors()
        return self._raw(x)

    def scale_errors(self, sq: torch.Tensor, err: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Divide raw errors by the error scale: (squared error, error vector). The vector is what
        the Mahalanobis score measures (for the ``window`` reduction, the root of the mean squared
        error)."""
        if self.error_scale is not None:
            sq = sq / self.error_scale.square()
            err = None if err is None else err / self.error_scale
        return sq, (err if err is not None else sq.clamp_min(TINY).sqrt())

    def errors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared error ``(B, S)``, error vector ``(B, S)``) at the judged row, each sensor
        divided by its error scale."""
        return self.scale_errors(*self.raw_errors(x))

    def combine(self, sq: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float64 scores from scaled errors: the L2 norm or the Mahalanobis distance."""
        if self.score == "mahalanobis":
            centred = vector.double() - self.error_mean
            q = ((centred @ self.error_precision) * centred).sum(dim=-1)
        else:
            q = sq.double().sum(dim=-1)
        return q.clamp_min(TINY).sqrt()

    def squared_errors(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, S)``: each sensor's squared error where the score takes it (the judged step;
        for ``reduction="window"`` each step's error divided by ``T``, so the sum over time is the
        mean the score uses). For the ``l2`` score the cells sum to ``score**2``."""
        self._check_errors()
        if self.kind == "reconstruct" and self.reduction == "window":
            with eval_mode(self.model):
                out = (x - self.model(x)).square() / x.shape[1]
            return out if self.error_scale is None else out / self.error_scale.square()
        out = torch.zeros_like(x)
        out[:, -1] = self.errors(x)[0]
        return out

    # -- the score --------------------------------------------------------------------------------
    def scores64(self, x: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float64 scores."""
        if not self.has_errors:
            with eval_mode(self.model):
                return self.model(x).double()
        return self.combine(*self.errors(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores64(x).to(x.dtype)


@dataclass(frozen=True, eq=False)
class Scoring:
    """What explanations need of a fitted detector — the whole protocol between the two.

    ``module``: the score (a :class:`ScoreModule` on ``device``); ``layout``: the window layout;
    ``sensors``; ``background``: up to 100 normal training windows ``(K, T, S)`` (scaled);
    ``scaler``: maps raw prepared values to what the module reads (``transform``);
    ``num_threads``: torch threads to use; ``model_name``: the catalogue name of the model.
    A detector hands out one such record per fitted state (``Detector.scoring()``); a new fit,
    a load or a change of score settings gives a new one.
    """

    module: ScoreModule
    layout: WindowLayout
    sensors: tuple[str, ...]
    background: np.ndarray
    scaler: Any
    device: torch.device
    num_threads: Optional[int]
    model_name: str

    @property
    def kind(self) -> str:
        return self.layout.kind

    @property
    def model(self) -> nn.Module:
        return self.module.model
