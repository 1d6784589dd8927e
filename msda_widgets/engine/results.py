"""The result of one scoring pass: :class:`Detection`.

A Detection lives in *prepared-row order* — the sorted, de-duplicated time axis of
``detection.index`` (``data.index``) — which is the order the dashboard draws, and it also gives
every per-row result aligned to the caller's own rows (``scores``, ``anomalies``,
``contributions``: pandas objects on the caller's index). Nothing downstream needs to re-index:
the prepared-order arrays, the rows they judge, labels aligned to them, the top sensors of each
row and the window layout are all here. Only numpy and pandas are used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np
import pandas as pd

from .data import SensorData
from .layout import WindowLayout

__all__ = ["Detection", "aligned_labels", "persistent", "TOP_SENSORS"]

#: Sensors named per row by :meth:`Detection.top_sensors` unless asked otherwise.
TOP_SENSORS = 3


def aligned_labels(frame: pd.DataFrame, data: SensorData) -> tuple[Optional[str], Optional[np.ndarray]]:
    """(the label column, ``(T,)`` bool labels in prepared-row order) of ``frame``, or (None, None).

    The label column is the first of ``data.report.label_columns`` present in ``frame``; a value
    counts as anomalous when it is a number above 0. Caller rows merged into one prepared row
    (duplicate timestamps) make it anomalous when any of them is."""
    label = next((c for c in data.report.label_columns if c in frame.columns), None)
    if label is None:
        return None, None
    truth = pd.to_numeric(frame[label], errors="coerce").fillna(0).to_numpy(dtype=np.float64) > 0
    return label, np.bincount(np.asarray(data.positions), weights=truth, minlength=len(data.index)) > 0


def persistent(above: np.ndarray, min_duration: int) -> np.ndarray:
    """``(T,)`` bool: rows that are above the threshold together with the ``min_duration - 1`` rows
    before them (causal: a row's flag never depends on later rows)."""
    above = np.asarray(above, dtype=bool)
    if min_duration <= 1 or not len(above):
        return above
    # length of the run of True values ending at each row
    idx = np.arange(len(above))
    last_false = np.maximum.accumulate(np.where(~above, idx, -1))
    return (idx - last_false) >= min_duration


@dataclass(frozen=True, eq=False)
class Detection:
    """Scores, flags and per-sensor contributions of one scoring pass.

    Prepared-row order (``T`` rows, ``S`` sensors): ``row_scores`` ``(T,)`` (NaN where no window
    judges the row: the first ``layout.first_scored`` rows), ``row_contributions`` ``(T, S)``
    (each sensor's squared error, so for the ``l2`` score ``row_scores**2`` is their sum; all NaN
    for a model that outputs its own score), ``row_flags`` ``(T,)``, ``labels`` ``(T,)`` bool when
    the data has a label column. ``caller_rows[i]`` is a row (``iloc``) of the caller's table that
    prepared row ``i`` came from.

    Caller order: ``scores``, ``anomalies`` and ``contributions`` are indexed like the caller's
    table (a row merged into another by a duplicate timestamp gets that row's values).
    """

    data: SensorData
    layout: WindowLayout
    row_scores: np.ndarray
    row_contributions: np.ndarray
    threshold: float
    caller_index: pd.Index
    labels: Optional[np.ndarray] = None
    label_column: Optional[str] = None
    min_duration: int = 1

    # -- prepared-row order ----------------------------------------------------------------------
    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(self.data.sensors)

    @property
    def index(self) -> pd.Index:
        """The prepared (sorted, de-duplicated) time index."""
        return self.data.index

    @property
    def n_rows(self) -> int:
        return len(self.row_scores)

    @cached_property
    def row_flags(self) -> np.ndarray:
        """``(T,)`` bool: above the threshold (for ``min_duration`` rows in a row)."""
        with np.errstate(invalid="ignore"):
            return persistent(self.row_scores > self.threshold, self.min_duration)

    @cached_property
    def scored_rows(self) -> np.ndarray:
        """``(T,)`` bool: rows that a window judges."""
        return np.isfinite(self.row_scores)

    @cached_property
    def flagged_positions(self) -> np.ndarray:
        return np.flatnonzero(self.row_flags)

    @cached_property
    def caller_rows(self) -> np.ndarray:
        rows = np.zeros(self.n_rows, dtype=np.int64)
        rows[np.asarray(self.data.positions)] = np.arange(len(self.data.positions))
        return rows

    @property
    def n_anomalies(self) -> int:
        return int(np.count_nonzero(self.row_flags))

    def top_sensors(self, positions: Optional[np.ndarray] = None, k: int = TOP_SENSORS) -> list[tuple[str, ...]]:
        """The ``k`` sensors with the largest contributions at each prepared row in ``positions``
        (default: the flagged rows), largest first; ``()`` where the model has no per-sensor errors
        or the row has no score."""
        positions = self.flagged_positions if positions is None else np.asarray(positions, dtype=np.int64)
        contrib = self.row_contributions[positions] if len(positions) else np.zeros((0, len(self.sensors)))
        k = max(0, min(int(k), contrib.shape[1]))
        names = np.asarray(self.sensors, dtype=object)
        known = np.isfinite(contrib).any(axis=1)
        order = np.argsort(-np.nan_to_num(contrib, nan=-np.inf), axis=1, kind="stable")[:, :k]
        return [tuple(names[row]) if ok else () for row, ok in zip(order, known)]

    def anomaly_table(self, k: int = TOP_SENSORS) -> pd.DataFrame:
        """The flagged rows, highest score first: ``position`` (prepared row), ``when``, ``score``
        and ``top_sensors`` (a comma-separated string)."""
        positions = self.flagged_positions
        table = pd.DataFrame({
            "position": positions,
            "when": self.index[positions],
            "score": self.row_scores[positions],
            "top_sensors": [", ".join(t) for t in self.top_sensors(positions, k)],
        })
        return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)

    def histogram(self, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """(counts, bin edges) of the finite scores."""
        finite = self.row_scores[self.scored_rows]
        return np.histogram(finite, bins=bins) if len(finite) else (np.zeros(0), np.zeros(1))

    def with_threshold(self, threshold: float, min_duration: Optional[int] = None) -> "Detection":
        """The same scores judged against another threshold (and persistence rule): a new object;
        this one is unchanged."""
        return dataclasses.replace(self, threshold=float(threshold),
                                   min_duration=self.min_duration if min_duration is None else int(min_duration))

    # -- caller order -----------------------------------------------------------------------------
    @cached_property
    def scores(self) -> pd.Series:
        return pd.Series(self.row_scores[self.data.positions], index=self.caller_index, name="score")

    @cached_property
    def anomalies(self) -> pd.Series:
        return pd.Series(self.row_flags[self.data.positions], index=self.caller_index, name="anomaly")

    @cached_property
    def contributions(self) -> pd.DataFrame:
        return pd.DataFrame(self.row_contributions[self.data.positions], index=self.caller_index,
                            columns=list(self.sensors))

    @property
    def scored(self) -> pd.Series:
        return self.scores.notna().rename("scored")

    def __repr__(self) -> str:
        return (f"Detection({self.n_rows} rows x {len(self.sensors)} sensors, {self.n_anomalies} above "
                f"threshold {self.threshold:.4g})")
