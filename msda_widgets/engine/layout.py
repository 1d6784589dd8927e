"""The window layout: which rows a window holds and which row its score judges.

Every part of the engine (training, scoring, explanations, streams) reads windows through one
:class:`WindowLayout`, so the arithmetic of "``T`` steps, the first scored row, the offsets" is
written once, here.

A window is ``T`` consecutive prepared rows that *end at the row it judges* (offset ``0``):

* ``forecast`` (``deepcnn``): ``T = lookback + 1``; the network sees the first ``lookback`` steps
  (offsets ``-lookback .. -1``) and forecasts the last one, the observed step;
* ``reconstruct`` (``lstm_ae``, ``pca``, ``kmeans``, ``zscore``): ``T = lookback``; the network
  reconstructs the whole window, offsets ``-(lookback - 1) .. 0``;
* ``score`` (``iforest``, PyOD adapters): ``T = lookback``; the model maps the window straight to
  a score.

So the first ``T - 1`` rows of a series are judged by no window (their score is NaN), and a
series of ``n`` rows has ``n - T + 1`` windows. Only numpy is used here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError, DataError

__all__ = ["WindowLayout", "KINDS"]

#: What a model does with a window (see the module docstring).
KINDS = ("forecast", "reconstruct", "score")


@dataclass(frozen=True)
class WindowLayout:
    """``lookback`` and the model ``kind`` decide every window's shape and alignment."""

    lookback: int
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"kind={self.kind!r} is not one of {', '.join(map(repr, KINDS))}.")
        if isinstance(self.lookback, bool) or not isinstance(self.lookback, (int, np.integer)) or self.lookback < 1:
            raise ConfigError(f"lookback must be a positive integer; got {self.lookback!r}")
        object.__setattr__(self, "lookback", int(self.lookback))

    @property
    def steps(self) -> int:
        """``T``: rows in one window (the judged row included)."""
        return self.lookback + 1 if self.kind == "forecast" else self.lookback

    @property
    def first_scored(self) -> int:
        """Rows at the start of a series that no window judges (``T - 1``)."""
        return self.steps - 1

    @property
    def offsets(self) -> np.ndarray:
        """``(T,)`` each window step's offset from the judged row: ``-(T - 1) .. 0``."""
        return np.arange(-(self.steps - 1), 1, dtype=np.int64)

    @property
    def model_steps(self) -> int:
        """Steps the network itself reads (a forecaster does not see the step it forecasts)."""
        return self.lookback

    def n_windows(self, n_rows: int) -> int:
        return max(0, int(n_rows) - self.first_scored)

    def min_rows(self, fitting: bool = False) -> int:
        """Rows needed to score one row (or, ``fitting``, to train: two windows)."""
        return self.steps + (1 if fitting else 0)

    def judged(self, n_rows: int) -> np.ndarray:
        """``(N,)`` the row each window judges, in order."""
        return self.first_scored + np.arange(self.n_windows(n_rows), dtype=np.int64)

    def window_rows(self, positions: np.ndarray) -> np.ndarray:
        """``(n, T)`` the rows of the series that make up the window judging each position."""
        positions = np.asarray(positions, dtype=np.int64)
        return positions[:, None] + self.offsets[None, :]

    def is_scored(self, positions: np.ndarray, n_rows: int) -> np.ndarray:
        positions = np.asarray(positions)
        return (positions >= self.first_scored) & (positions < n_rows)

    def windows(self, values: np.ndarray) -> np.ndarray:
        """``(N, T, S)``: every window of a ``(n, S)`` series as a read-only strided view (no copy);
        window ``i`` judges row ``first_scored + i``."""
        v = np.asarray(values)
        if v.ndim != 2:
            raise DataError(f"Windows need a (time, sensors) array; got shape {v.shape}.")
        if v.shape[0] < self.steps:
            raise DataError(f"Too few rows for one {self.kind} window: lookback={self.lookback} needs at "
                            f"least {self.steps} rows; got {v.shape[0]}. Use a longer series or a smaller "
                            f"lookback.")
        return sliding_window_view(v, self.steps, axis=0).transpose(0, 2, 1)

    def split(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(what the network reads, what its output is compared with) for windows ``(n, T, S)``:
        a forecaster reads the first ``lookback`` steps and is compared with the last; the other
        kinds read and are compared with the whole window."""
        if self.kind == "forecast":
            return windows[:, :-1], windows[:, -1]
        return windows, windows
