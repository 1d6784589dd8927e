"""Sensor profiling: how each sensor moves, how the sensors move together, and which to model.

The useful parts of the ancestor's ``FeatureSelection`` (msda), computed with numpy / pandas
over the whole table at once (no Python loop over rows or windows), returned as one frozen
:class:`SensorProfile` instead of printed text and CSV files:

>>> from msda_widgets import load_csv, profile_sensors
>>> prof = profile_sensors(load_csv("Canadian_climate_history.csv"), window=30, threshold=1.0)
>>> prof.summary                         # doctest: +SKIP  one row per sensor
>>> prof.correlation                     # doctest: +SKIP  sensors x sensors (Pearson)
>>> prof.suggest_sensors().sensors       # doctest: +SKIP  the sensors worth modelling
>>> prof.features()                      # doctest: +SKIP  one row per window: model inputs

Definitions (``x_t`` is a sensor's value in row ``t``; rows are in time order):

* **change** ``x_t - x_{t-1}``: the step from the previous row (NaN in the first row, and
  where either value is missing). Its sign is the step's **direction**: increase, decrease or
  equal (the ancestor's ``Inc`` / ``Dec`` / ``Eql``).
* **rate** of change: ``change / dt``, where ``dt`` is the time between the two rows in
  :attr:`SensorProfile.time_unit` units (by default the median spacing of the rows, so on a
  regular grid rate == change and a gap of three days divides the change by three). Without a
  time index, ``dt`` is one row.
* **growth / decay** of a step: growth when ``change > threshold * sd(change)``, decay when
  ``change < -threshold * sd(change)``, where ``sd(change)`` is that sensor's standard deviation
  of its changes over the whole table (ddof=1, missing steps left out). ``threshold`` is
  therefore in standard deviations of the sensor's own steps, so one value serves sensors of
  any unit; ``threshold=0`` counts every increase as growth and every decrease as decay.
* **windows**: ``window`` consecutive rows; a window ends every ``step`` rows (the default
  ``step=window`` gives non-overlapping windows like the ancestor's; ``step=1`` is a classic
  rolling window). The first window ends at row ``window - 1``; rows after the last complete
  window are left out. A window is labelled with the index of its **last** row. Window
  statistics skip missing values (mean: NaN with no value, std (ddof=1): NaN with fewer than
  two). A window's growth / decay counts are the growth / decay steps that *end* in it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__ = [
    "SensorProfile",
    "SensorSuggestion",
    "profile_sensors",
    "features",
    "FEATURE_NAMES",
    "SUMMARY_COLUMNS",
    "check_window",
    "check_fraction",
    "drift_window",
    "MIN_DRIFT_ROWS",
    "MAX_DRIFT_WINDOWS",
]

#: Per-window statistics in :meth:`SensorProfile.features` (column ``f"{sensor}_{name}"``).
FEATURE_NAMES = ("mean", "std", "mean_change", "mean_rate", "std_change", "std_rate",
                 "growth", "decay", "count")

#: Columns of :attr:`SensorProfile.summary` (one row per sensor).
#: ``moves_with``: the other sensor it moves most consistently with, the same way or the opposite
#: way: the partner with the highest ``max(agreement, opposition)`` share (ties: same way, then the
#: first sensor). ``relation``: ``"same"`` when that share is the partner's ``agreement`` (steps in
#: which both go up, both down or both stay equal), ``"opposite"`` when it is its ``opposition``
#: (steps in which one goes up and the other down), larger. ``agreement``: that share for the
#: chosen relation (0 ... 1, over the steps both sensors have). ``""`` / ``""`` / NaN for a sensor
#: without a partner (a single sensor, or no step shared with another).
SUMMARY_COLUMNS = ("n_values", "n_missing", "mean", "std", "min", "max",
                   "increase", "decrease", "equal", "activity",
                   "max_rate", "max_rate_scaled", "max_rate_relative",
                   "growth", "decay", "mean_window_std", "moves_with", "relation", "agreement")


@dataclass(frozen=True, eq=False)
class SensorSuggestion:
    """Which sensors to model, and why (from :meth:`SensorProfile.suggest_sensors`).

    ``sensors``: the suggested sensors, best first (pass them to ``Detector(sensors=...)``).
    ``table``: every sensor, in rank order, with ``rank``, ``keep``, ``information`` (direction
    entropy), ``score`` (information minus redundancy when it was chosen; NaN if left out),
    ``activity``, ``most_correlated``, ``max_abs_correlation`` and ``reason`` (plain words: why
    it is kept or left out).
    """

    sensors: tuple[str, ...]
    table: pd.DataFrame
    max_correlation: float
    min_activity: float

    @property
    def left_out(self) -> tuple[str, ...]:
        return tuple(s for s in self.table.index if s not in self.sensors)


@dataclass(frozen=True, eq=False)
class SensorProfile:
    """The profile of a table's sensors (see the module docstring for every definition).

    Per row (rows x sensors DataFrames on the data's index): ``change``, ``rate``.
    Per sensor: ``summary`` (columns :data:`SUMMARY_COLUMNS`).
    Per window (windows x sensors, labelled by each window's last row): ``window_mean``,
    ``window_std``, ``window_mean_change``, ``window_mean_rate``, ``window_std_change``,
    ``window_std_rate``, ``window_growth``, ``window_decay``, ``window_count`` (values present).
    Between sensors (sensors x sensors): ``correlation`` (Pearson, pairwise-complete rows),
    ``agreement`` (share of steps in which two sensors move in the same direction: both up,
    both down or both unchanged), ``opposition`` (share of steps in which they move in opposite
    directions: one up and the other down; a step where only one is unchanged counts in neither)
    and ``correlation_drift`` (standard deviation, ddof=1, of the
    correlation over the non-overlapping windows of ``drift_window`` rows: how much it shifts;
    ``drift_window`` is ``window``, but at least :data:`MIN_DRIFT_ROWS` rows and long enough for
    at most :data:`MAX_DRIFT_WINDOWS` windows, see :func:`drift_window`).
    """

    sensors: tuple[str, ...]
    index: pd.Index
    values: np.ndarray = field(repr=False)   # (T, S) float64, read-only; NaN = missing
    window: int
    step: int
    threshold: float
    time_unit: Optional[pd.Timedelta]         # None: rows are the time unit
    change: pd.DataFrame = field(repr=False)
    rate: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    window_mean: pd.DataFrame = field(repr=False)
    window_std: pd.DataFrame = field(repr=False)
    window_mean_change: pd.DataFrame = field(repr=False)
    window_mean_rate: pd.DataFrame = field(repr=False)
    window_std_change: pd.DataFrame = field(repr=False)
    window_std_rate: pd.DataFrame = field(repr=False)
    window_growth: pd.DataFrame = field(repr=False)
    window_decay: pd.DataFrame = field(repr=False)
    window_count: pd.DataFrame = field(repr=False)
    correlation: pd.DataFrame = field(repr=False)
    agreement: pd.DataFrame = field(repr=False)
    opposition: pd.DataFrame = field(repr=False)
    correlation_drift: pd.DataFrame = field(repr=False)
    drift_window: int = 0                     # rows per window of correlation_drift
    seconds: float = 0.0

    # -- derived --------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return len(self.index)

    @property
    def n_windows(self) -> int:
        return len(self.window_mean)

    @property
    def rate_unit(self) -> str:
        """The rates' time unit in words: ``"per day"``, ``"per 10 min"``, ``"per row"``."""
        return "per " + _unit_words(self.time_unit)

    def features(self, *, flat: bool = True) -> pd.DataFrame:
        """The engineered features: one row per window, for users who want them as model inputs.

        Columns ``f"{sensor}_{name}"`` for each name in :data:`FEATURE_NAMES` (window mean and
        std, their change and rate of change from the previous window, the growth and decay
        counts, and the number of values present), grouped by sensor. ``flat=False`` gives
        (sensor, name) MultiIndex columns instead. A new DataFrame on each call.
        """
        parts = {"mean": self.window_mean, "std": self.window_std,
                 "mean_change": self.window_mean_change, "mean_rate": self.window_mean_rate,
                 "std_change": self.window_std_change, "std_rate": self.window_std_rate,
                 "growth": self.window_growth, "decay": self.window_decay, "count": self.window_count}
        S, F = len(self.sensors), len(FEATURE_NAMES)
        block = np.empty((self.n_windows, S, F))
        for f, name in enumerate(FEATURE_NAMES):
            block[:, :, f] = parts[name].to_numpy(dtype=np.float64)
        columns = pd.MultiIndex.from_product([list(self.sensors), list(FEATURE_NAMES)],
                                             names=["sensor", "feature"])
        out = pd.DataFrame(block.reshape(self.n_windows, S * F), index=self.window_mean.index.copy(),
                           columns=columns)
        if flat:
            out.columns = [f"{s}_{n}" for s, n in columns]
        return out

    def rolling_correlation(self, a: str, b: str, window: Optional[int] = None) -> pd.Series:
        """Pearson correlation of sensors ``a`` and ``b`` over a rolling window (default: the
        profile's ``window``), on the data's index; each value uses the window ending at that row
        (rows with either value missing are left out; NaN with fewer than two pairs or a
        constant sensor in the window, and in the first ``window - 1`` rows)."""
        ia, ib = self._position(a), self._position(b)
        w = self.window if window is None else check_window(window, self.n_rows)
        xa = pd.Series(self.values[:, ia])
        xb = pd.Series(self.values[:, ib])
        r = xa.rolling(w, min_periods=2).corr(xb).to_numpy(copy=True)
        r[: w - 1] = np.nan
        r[~np.isfinite(r)] = np.nan
        return pd.Series(np.clip(r, -1.0, 1.0), index=self.index, name=f"corr({a}, {b})")

    def suggest_sensors(self, *, max_correlation: float = 0.95, min_activity: float = 0.05,
                        top: Optional[int] = None) -> SensorSuggestion:
        """Rank the sensors by what they add and leave out the redundant ones.

        The ancestor related the sensors' trend arrays (increase / decrease / equal) to find the
        most suitable sensors; here the rule is explicit and greedy, like mRMR:

        * ``information`` = entropy of the sensor's step directions (shares of increase /
          decrease / equal steps), divided by log(3): 0 for a sensor that never changes or only
          ever rises (a counter), about 0.63 for one that rises and falls evenly and is never
          flat, 1 for an even mix of all three.
        * A sensor without variation, or that changes in fewer than ``min_activity`` of its
          steps, is left out ("never changes" / "rarely changes").
        * The sensors are chosen one at a time: next is the one with the highest
          ``information - max |correlation| with the sensors already chosen`` (its ``score``).
          A sensor whose absolute correlation with a chosen one reaches ``max_correlation`` is
          left out as redundant with it. ``top``: choose at most this many.

        ``rank`` follows the order of choice (then the left-out sensors, by information). Nothing
        is changed; apply the result with ``Detector(sensors=suggestion.sensors)`` or the
        dashboard's "Use suggested sensors" button.
        """
        max_correlation = check_fraction(max_correlation, "max_correlation", low_open=True)
        min_activity = check_fraction(min_activity, "min_activity")
        if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
            raise ConfigError(f"top must be a whole number of at least 1 (or None for no limit); got {top!r}.")
        summ = self.summary
        counts = summ[["increase", "decrease", "equal"]].to_numpy(dtype=np.float64)
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = counts / totals
            logs = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
        information = np.where(totals[:, 0] > 0, -(p * logs).sum(axis=1) / math.log(3.0), 0.0)
        activity = summ["activity"].to_numpy(dtype=np.float64)
        std = summ["std"].to_numpy(dtype=np.float64)
        corr = np.abs(self.correlation.to_numpy(dtype=np.float64, copy=True))
        np.fill_diagonal(corr, np.nan)
        corr0 = np.nan_to_num(corr, nan=0.0)
        names = list(self.sensors)
        S = len(names)
        reasons: dict[int, str] = {}
        score = np.full(S, np.nan)
        candidates: list[int] = []
        for i in range(S):
            if not np.isfinite(std[i]) or std[i] == 0:
                reasons[i] = "no values" if summ["n_values"].iloc[i] == 0 else "never changes"
            elif not np.isfinite(activity[i]) or activity[i] < min_activity:
                reasons[i] = f"rarely changes (in {np.nan_to_num(activity[i]):.0%} of its steps)"
            else:
                candidates.append(i)
        kept: list[int] = []
        redundancy = np.zeros(S)            # max |r| with the sensors chosen so far
        closest = np.full(S, -1)
        while candidates:
            if top is not None and len(kept) >= top:
                for i in candidates:
                    reasons[i] = f"beyond the top {top}"
                break
            cand = np.asarray(candidates)
            marginal = information[cand] - redundancy[cand]
            best = int(cand[np.lexsort((cand, -activity[cand], -marginal))[0]])
            kept.append(best)
            score[best] = information[best] - redundancy[best]
            reasons[best] = "informative"
            candidates.remove(best)
            r = corr0[best]
            closer = r > redundancy
            closest[closer] = best
            redundancy = np.maximum(redundancy, r)
            for i in [i for i in candidates if redundancy[i] >= max_correlation]:
                reasons[i] = f"redundant with {names[closest[i]]} (|r| = {corr0[i, closest[i]]:.2f})"
                candidates.remove(i)
        rest = sorted((i for i in range(S) if i not in kept), key=lambda i: (-information[i], names[i]))
        order = kept + rest
        with np.errstate(invalid="ignore"):
            any_finite = np.isfinite(corr).any(axis=1)
            partner = np.where(any_finite, np.argmax(np.nan_to_num(corr, nan=-1.0), axis=1), -1)
        table = pd.DataFrame({
            "rank": np.arange(1, S + 1),
            "keep": [i in kept for i in order],
            "information": information[order],
            "score": score[order],
            "activity": activity[order],
            "most_correlated": [names[partner[i]] if partner[i] >= 0 else "" for i in order],
            "max_abs_correlation": [corr[i, partner[i]] if partner[i] >= 0 else np.nan for i in order],
            "reason": [reasons[i] for i in order],
        }, index=pd.Index([names[i] for i in order], name="sensor"))
        return SensorSuggestion(tuple(names[i] for i in kept), table, max_correlation, min_activity)

    def _position(self, name: str) -> int:
        try:
            return self.sensors.index(name)
        except ValueError:
            raise DataError(f"No sensor named {name!r} in this profile; its sensors are "
                            f"{', '.join(map(repr, self.sensors))}.") from None

    def __repr__(self) -> str:
        return (f"SensorProfile({self.n_rows:,} rows x {len(self.sensors)} sensors, window={self.window}, "
                f"step={self.step}, threshold={self.threshold:g}, {self.n_windows:,} windows, "
                f"rates {self.rate_unit})")


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------

def check_window(window: Any, n_rows: int, name: str = "window") -> int:
    """``window`` as an int of at least 2 rows and at most ``n_rows``, or a ConfigError that says so
    (also used by the dashboard to validate its controls before computing)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ConfigError(f"{name} must be a whole number of rows (at least 2); got {window!r}.")
    window = int(window)
    if window < 2:
        raise ConfigError(f"{name} must be at least 2 rows (a window of one row has no spread); got {window}.")
    if window > n_rows:
        raise ConfigError(f"{name} is {window} rows but the data has only {n_rows:,} rows; choose a "
                          f"{name} of at most {n_rows:,}.")
    return window


def check_fraction(value: Any, name: str, low_open: bool = False) -> float:
    """``value`` as a float in [0, 1] (``(0, 1]`` with ``low_open``), or a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number between 0 and 1; got {value!r}.")
    value = float(value)
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be {'above 0 and at most 1' if low_open else 'between 0 and 1'}; "
                          f"got {value:g}.")
    return value


def _as_table(data: Any, sensors: Optional[Sequence[str]]) -> tuple[np.ndarray, pd.Index, tuple[str, ...]]:
    """(values copy (T, S) float64, index, sensor names) from a DataFrame / array / SeriesView."""
    if hasattr(data, "values") and hasattr(data, "index") and hasattr(data, "sensors") \
            and not isinstance(data, pd.DataFrame):  # SensorData / the dashboard's SeriesView
        frame = pd.DataFrame(np.asarray(data.values, dtype=np.float64), index=data.index,
                             columns=list(data.sensors))
    elif isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, pd.Series):
        frame = data.to_frame(name=data.name if data.name is not None else "sensor_0")
    elif isinstance(data, np.ndarray) or isinstance(data, (list, tuple)):
        arr = np.asarray(data)
        if arr.ndim not in (1, 2):
            raise DataError(f"Expected a table (rows x sensors); got an array of shape {arr.shape}.")
        arr = arr.reshape(len(arr), -1)
        frame = pd.DataFrame(arr, columns=[f"sensor_{k}" for k in range(arr.shape[1])])
    else:
        raise DataError(f"Expected a pandas DataFrame (one column per sensor); got {type(data).__name__}. "
                        f"Wrap your data in pd.DataFrame(...) or read a file with load_csv(...).")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"Column names must be unique; repeated: {', '.join(map(repr, dup))}. Rename them first.")
    if sensors is not None:
        if isinstance(sensors, str):
            sensors = [sensors]
        wanted = [str(s) for s in sensors]
        missing = [s for s in wanted if s not in names]
        if missing:
            raise DataError(f"No column named {', '.join(map(repr, missing))}; the table has "
                            f"{', '.join(map(repr, names[:30]))}{' ...' if len(names) > 30 else ''}.")
        if len(set(wanted)) != len(wanted):
            raise ConfigError("sensors lists a column more than once.")
        cols = [names.index(s) for s in wanted]
        bad = [wanted[k] for k, j in enumerate(cols) if not _numeric(frame.iloc[:, j])]
        if bad:
            raise DataError(f"Column {', '.join(map(repr, bad))} is not numeric and cannot be profiled; "
                            f"convert it (pd.to_numeric) or leave it out of sensors.")
    else:
        cols = [j for j in range(frame.shape[1]) if _numeric(frame.iloc[:, j])]
        if not cols:
            raise DataError("The table has no numeric column to profile. Sensors must be numbers; "
                            "read the file with load_csv(...), which converts decimal commas and sentinels.")
    values = np.array(frame.iloc[:, cols].to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    if len(values) < 2:
        raise DataError(f"Profiling needs at least 2 rows; the table has {len(values)}.")
    index = frame.index
    if isinstance(index, pd.DatetimeIndex):
        if index.hasnans:
            raise DataError("The time index has missing timestamps; drop those rows first.")
        if not index.is_monotonic_increasing:
            raise DataError("The rows are not in time order; sort them first (df.sort_index()) or read the "
                            "file with load_csv(...), which sorts by time.")
        if not index.is_unique:
            raise DataError("The time index has duplicate timestamps; merge them first (e.g. "
                            "df.groupby(level=0).mean()).")
    return values, index, tuple(names[j] for j in cols)


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _resolve_unit(index: pd.Index, time_unit: Any) -> tuple[Optional[pd.Timedelta], np.ndarray]:
    """(time unit, dt (T-1,) in that unit) for the steps between rows."""
    n = len(index)
    if not isinstance(index, pd.DatetimeIndex):
        if time_unit is not None:
            raise ConfigError("time_unit needs a DatetimeIndex (rows in time); this table has none, so rates "
                              "are per row. Leave time_unit=None or set a time index.")
        return None, np.ones(n - 1)
    ns = index.as_unit("ns").asi8.astype(np.float64)
    gaps = np.diff(ns)
    if time_unit is None:
        unit = pd.Timedelta(int(np.median(gaps)), unit="ns")
    else:
        try:
            unit = pd.Timedelta(time_unit)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"time_unit must be a duration such as '1D' or '10min'; got {time_unit!r}.") from exc
        if pd.isna(unit) or unit <= pd.Timedelta(0):
            raise ConfigError(f"time_unit must be a positive duration; got {time_unit!r}.")
    return unit, gaps / float(unit.value)


def _unit_words(unit: Optional[pd.Timedelta]) -> str:
    if unit is None:
        return "row"
    named = {pd.Timedelta(days=7): "week", pd.Timedelta(days=1): "day", pd.Timedelta(hours=1): "hour",
             pd.Timedelta(minutes=1): "minute", pd.Timedelta(seconds=1): "second"}
    if unit in named:
        return named[unit]
    for size, word in ((pd.Timedelta(days=1), "days"), (pd.Timedelta(hours=1), "h"),
                       (pd.Timedelta(minutes=1), "min"), (pd.Timedelta(seconds=1), "s")):
        if unit >= size and unit % size == pd.Timedelta(0):
            return f"{unit // size} {word}"
    return str(unit)


# ------------------------------------------------------------------------------------------------
# computations (vectorised)
# ------------------------------------------------------------------------------------------------

#: Rows per block of the cross-products below. One big ``A.T @ B`` over ~30,000 rows wakes
#: OpenBLAS's threads, which on a busy shared server (a Voila kernel per visitor) stalls for
#: 0.1-2 s; a stack of small products stays on one thread and takes ~15 ms for 30k x 26.
_GRAM_BLOCK = 256


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` (both (T, S) float64) as a sum of blocks of :data:`_GRAM_BLOCK` rows."""
    T = len(a)
    k = -(-T // _GRAM_BLOCK)
    pad = k * _GRAM_BLOCK - T
    if pad:
        a = np.vstack([a, np.zeros((pad, a.shape[1]))])
        b = np.vstack([b, np.zeros((pad, b.shape[1]))])
    a3 = a.reshape(k, _GRAM_BLOCK, a.shape[1])
    b3 = b.reshape(k, _GRAM_BLOCK, b.shape[1])
    return (a3.transpose(0, 2, 1) @ b3).sum(axis=0)


def _pair_counts(masks: list[np.ndarray], others: Optional[list[np.ndarray]] = None) -> np.ndarray:
    """(S, S) sum over the boolean (T, S) masks of the rows where both columns are True: entry
    ``[i, j]`` counts the rows with ``masks[k][:, i]`` and ``others[k][:, j]`` (``others``: the
    masks themselves unless given; a cross count is not symmetric)."""
    others = masks if others is None else others
    if hasattr(np, "bitwise_count"):  # numpy >= 2: popcount of packed bits, ~10x less work
        total = np.zeros((masks[0].shape[1],) * 2, dtype=np.int64)
        for m, o in zip(masks, others):
            bits = np.packbits(np.ascontiguousarray(m.T), axis=1)          # (S, T / 8)
            obits = bits if o is m else np.packbits(np.ascontiguousarray(o.T), axis=1)
            total += np.bitwise_count(bits[:, None, :] & obits[None, :, :]).sum(axis=2, dtype=np.int64)
        return total.astype(np.float64)
    return sum(_gram(m.astype(np.float64), o.astype(np.float64)) for m, o in zip(masks, others))  # pragma: no cover


def _pairwise_directions(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) shares of the steps where both sensors are defined in which they move the same way
    (both up, both down or both equal) and the opposite way (one up, the other down); NaN for a
    pair without a common step."""
    valid = np.isfinite(d)
    up, down = d > 0, d < 0
    same = _pair_counts([up, down, d == 0])
    up_down = _pair_counts([up], [down])                 # [i, j]: i up while j goes down
    opposite = up_down + up_down.T                       # ... plus i down while j goes up
    n = np.full(same.shape, float(len(d))) if valid.all() else _pair_counts([valid])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, same / n, np.nan), np.where(n > 0, opposite / n, np.nan)


def _correlation(X: np.ndarray) -> np.ndarray:
    """(S, S) Pearson correlation; pairwise-complete rows (as ``DataFrame.corr``) with NaN."""
    if not np.isfinite(X).all():
        return pd.DataFrame(X).corr().to_numpy(copy=True)
    Xc = X - X.mean(axis=0)
    g = _gram(Xc, Xc)
    var = np.diag(g).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = var > 1e-24 * len(X) * np.maximum(np.abs(X).max(axis=0), 1.0) ** 2
        r = g / np.sqrt(np.outer(var, var))
    np.fill_diagonal(r, 1.0)
    r[~ok, :] = np.nan
    r[:, ~ok] = np.nan
    return r


#: The correlation drift uses windows of at least this many rows (a correlation over a handful
#: of rows is mostly noise) ...
MIN_DRIFT_ROWS = 20
#: ... and at most this many windows (longer windows on long tables: bounded time and memory).
MAX_DRIFT_WINDOWS = 1000


def drift_window(window: int, n_rows: int) -> int:
    """Rows per window of the correlation drift: ``max(window, MIN_DRIFT_ROWS,
    ceil(n_rows / MAX_DRIFT_WINDOWS))``, at most ``n_rows``."""
    return int(min(max(window, MIN_DRIFT_ROWS, -(-n_rows // MAX_DRIFT_WINDOWS)), n_rows))


def _block_gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a[k].T @ b[k]`` for each k of (K, w, S) stacks, in blocks of at most :data:`_GRAM_BLOCK`
    rows (a long window would otherwise wake OpenBLAS's threads; see :func:`_gram`)."""
    K, w, S = a.shape
    if w <= _GRAM_BLOCK:
        return a.transpose(0, 2, 1) @ b
    nb = -(-w // _GRAM_BLOCK)
    pad = nb * _GRAM_BLOCK - w
    if pad:
        a = np.concatenate([a, np.zeros((K, pad, S))], axis=1)
        b = np.concatenate([b, np.zeros((K, pad, b.shape[2]))], axis=1)
    a4 = a.reshape(K * nb, _GRAM_BLOCK, S)
    b4 = b.reshape(K * nb, _GRAM_BLOCK, b.shape[2])
    return (a4.transpose(0, 2, 1) @ b4).reshape(K, nb, S, b.shape[2]).sum(axis=1)


def _window_correlations(Z: np.ndarray) -> np.ndarray:
    """(K, S, S) Pearson correlations of the K blocks of ``Z`` (K, w, S), each pair on the rows
    where both are present (like ``DataFrame.corr`` on each block)."""
    K, window, S = Z.shape
    M = np.isfinite(Z)
    Mf = M.astype(np.float64)
    # centre each sensor by its own mean in the window (conditioning; correlation is unchanged)
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = Mf.sum(axis=1, keepdims=True)
        mean = np.where(cnt > 0, np.where(M, Z, 0.0).sum(axis=1, keepdims=True) / np.maximum(cnt, 1), 0.0)
    Z0 = np.where(M, Z - mean, 0.0)
    sxy = _block_gram(Z0, Z0)       # (K, S, S) sum of x_i x_j over rows where both are present
    full = M.all(axis=(1, 2))       # windows without a missing value: the plain formula
    ss = (Z0 * Z0).sum(axis=1)      # (K, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        vx = np.broadcast_to(ss[:, :, None], sxy.shape).copy()
        vy = np.broadcast_to(ss[:, None, :], sxy.shape).copy()
        cov = sxy
        n = np.full(sxy.shape, float(window))
        part = np.flatnonzero(~full)
        if len(part):               # pairwise-complete rows, as DataFrame.corr
            Zp, Mp = Z0[part], Mf[part]
            n_p = _block_gram(Mp, Mp)
            sx = _block_gram(Zp, Mp)          # sum of x_i over the rows where x_j is present too
            sxx = _block_gram(Zp * Zp, Mp)
            sy, syy = sx.transpose(0, 2, 1), sxx.transpose(0, 2, 1)
            n[part] = n_p
            cov[part] = sxy[part] - sx * sy / n_p
            vx[part] = sxx - sx * sx / n_p
            vy[part] = syy - sy * sy / n_p
        tiny = 1e-24 * n
        ok = (n >= 2) & (vx > tiny) & (vy > tiny)
        r = np.where(ok, cov / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)
    return np.clip(r, -1.0, 1.0)


def _correlation_drift(X: np.ndarray, window: int) -> np.ndarray:
    """(S, S) standard deviation (ddof=1) of the correlation over the non-overlapping windows of
    ``window`` rows (NaN with fewer than two windows where it is defined). Windows are processed
    a few hundred at a time so that memory stays bounded for many sensors."""
    T, S = X.shape
    K = T // window
    total = np.zeros((S, S))
    total_sq = np.zeros((S, S))
    count = np.zeros((S, S))
    per_chunk = max(1, int(2_000_000 // max(S * S, window * S)))
    blocks = X[: K * window].reshape(K, window, S)
    for k0 in range(0, K, per_chunk):
        r = _window_correlations(blocks[k0:k0 + per_chunk])
        ok = np.isfinite(r)
        r0 = np.where(ok, r, 0.0)
        total += r0.sum(axis=0)
        total_sq += (r0 * r0).sum(axis=0)
        count += ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (total_sq - total * total / count) / (count - 1)
    return np.where(count >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)


def profile_sensors(data: Any, *, window: int = 30, threshold: float = 1.0, step: Optional[int] = None,
                    sensors: Optional[Sequence[str]] = None, time_unit: Any = None) -> SensorProfile:
    """Profile a table's sensors: directions and rates of change, window statistics, growth /
    decay counts, correlations and how they shift (see the module docstring for definitions).

    ``data``: a DataFrame (every numeric column is a sensor unless ``sensors`` names them; text
    and boolean columns are skipped), a 2-D array, or the dashboard's ``SeriesView``. Rows must be
    in time order; a ``DatetimeIndex`` makes rates per ``time_unit`` (default: the median spacing
    of the rows, e.g. per day for daily data). Missing values (NaN) stay missing: every statistic
    leaves them out. The caller's data is never modified.

    ``window``: rows per window (2 ... number of rows). ``step``: rows between window ends
    (default ``window``: non-overlapping). ``threshold``: growth / decay threshold in standard
    deviations of each sensor's own step changes (>= 0; see :class:`SensorProfile`).

    Raises :class:`~msda_widgets.errors.ConfigError` for a bad window / step / threshold /
    time unit and :class:`~msda_widgets.errors.DataError` for data it cannot profile.
    """
    t0 = time.perf_counter()
    X, index, names = _as_table(data, sensors)
    T, S = X.shape
    window = check_window(window, T)
    if step is None:
        step = window
    elif isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= T:
        raise ConfigError(f"step must be a whole number of rows between 1 and {T:,} (or None: the window "
                          f"length); got {step!r}.")
    step = int(step)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(threshold)) or float(threshold) < 0:
        raise ConfigError(f"threshold must be a number >= 0 (in standard deviations of each sensor's step "
                          f"changes; 0 counts every rise as growth); got {threshold!r}.")
    threshold = float(threshold)
    unit, dt = _resolve_unit(index, time_unit)
    X.setflags(write=False)
    cols = pd.Index(names, name="sensor")

    # -- steps ----------------------------------------------------------------------------------
    d = X[1:] - X[:-1]                                   # (T-1, S), NaN where either is missing
    rate_steps = d / dt[:, None]
    finite_d = np.isfinite(d)
    inc = (d > 0).sum(axis=0)
    dec = (d < 0).sum(axis=0)
    eq = (d == 0).sum(axis=0)
    n_steps = finite_d.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        activity = np.where(n_steps > 0, (inc + dec) / np.maximum(n_steps, 1), np.nan)
        sd_change = _nanstd(d)
        limit = threshold * sd_change
        growth_steps = d > limit                          # NaN compares False
        decay_steps = d < -limit
        abs_rate = np.abs(rate_steps)
        has_rate = np.isfinite(abs_rate).any(axis=0)
        max_rate = np.where(has_rate, np.nanmax(np.where(np.isfinite(abs_rate), abs_rate, -np.inf), axis=0),
                            np.nan)
        sd = _nanstd(X)
        max_rate_scaled = np.where(sd > 0, max_rate / sd, np.nan)
        typical = np.nanmedian(max_rate_scaled) if np.isfinite(max_rate_scaled).any() else np.nan
        max_rate_relative = max_rate_scaled / typical if typical and np.isfinite(typical) else \
            np.full(S, np.nan)
    nan_row = np.full((1, S), np.nan)
    change = pd.DataFrame(np.vstack([nan_row, d]), index=index, columns=cols)
    rate = pd.DataFrame(np.vstack([nan_row, rate_steps]), index=index, columns=cols)

    # -- windows --------------------------------------------------------------------------------
    ends = np.arange(window - 1, T, step)
    w_count = _window_sums(np.isfinite(X), window, ends)
    if step == window:  # non-overlapping: each window is a block of the reshaped table
        w_mean, w_std = _block_mean_std(X[: len(ends) * window].reshape(len(ends), window, S))
    else:               # overlapping: pandas' rolling kernels, then one row per window end
        roll = pd.DataFrame(X).rolling(window, min_periods=1)
        w_mean = roll.mean().to_numpy()[ends]
        w_std = roll.std().to_numpy()[ends]
        w_mean[w_count == 0] = np.nan
    # step t (row t-1 -> t) is row t's; the window of rows (e - window, e] holds steps e-window+1..e
    w_growth = _window_sums(np.vstack([np.zeros((1, S), dtype=bool), growth_steps]), window, ends)
    w_decay = _window_sums(np.vstack([np.zeros((1, S), dtype=bool), decay_steps]), window, ends)
    if unit is None:
        w_dt = np.full(len(ends) - 1, float(step))
    else:
        w_dt = np.diff(index.as_unit("ns").asi8[ends].astype(np.float64)) / float(unit.value)
    w_mean_change = np.vstack([nan_row, np.diff(w_mean, axis=0)])
    w_std_change = np.vstack([nan_row, np.diff(w_std, axis=0)])
    w_mean_rate = np.vstack([nan_row, np.diff(w_mean, axis=0) / w_dt[:, None]])
    w_std_rate = np.vstack([nan_row, np.diff(w_std, axis=0) / w_dt[:, None]])
    w_index = index[ends]

    def wframe(a: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(a, index=w_index, columns=cols)

    # -- between sensors ------------------------------------------------------------------------
    corr_np = _correlation(X)
    corr_np[~np.isfinite(corr_np)] = np.nan
    correlation = pd.DataFrame(np.clip(corr_np, -1.0, 1.0), index=cols.copy(), columns=cols.copy())
    agree, oppose = _pairwise_directions(d)
    d_window = drift_window(window, T)
    drift = _correlation_drift(X, d_window)
    # the partner: the highest share of same-way or opposite-way steps (ties: same way)
    opposite_wins = oppose > agree                        # NaN compares False
    tied = np.where(opposite_wins, oppose, agree)
    np.fill_diagonal(tied, np.nan)
    has_partner = np.isfinite(tied).any(axis=1) if S > 1 else np.zeros(S, dtype=bool)
    partner = np.where(has_partner, np.argmax(np.nan_to_num(tied, nan=-1.0), axis=1), -1)

    has_std = np.isfinite(w_std)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_window_std = np.where(has_std.any(axis=0), np.where(has_std, w_std, 0.0).sum(axis=0)
                                   / np.maximum(has_std.sum(axis=0), 1), np.nan)
    n_values = np.isfinite(X).sum(axis=0)
    with np.errstate(invalid="ignore"):
        means = np.where(n_values > 0, np.nansum(X, axis=0) / np.maximum(n_values, 1), np.nan)
        mins = np.where(n_values > 0, np.nanmin(np.where(np.isfinite(X), X, np.inf), axis=0), np.nan)
        maxs = np.where(n_values > 0, np.nanmax(np.where(np.isfinite(X), X, -np.inf), axis=0), np.nan)
    summary = pd.DataFrame({
        "n_values": n_values, "n_missing": T - n_values, "mean": means, "std": sd, "min": mins, "max": maxs,
        "increase": inc, "decrease": dec, "equal": eq, "activity": activity,
        "max_rate": max_rate, "max_rate_scaled": max_rate_scaled, "max_rate_relative": max_rate_relative,
        "growth": growth_steps.sum(axis=0), "decay": decay_steps.sum(axis=0),
        "mean_window_std": mean_window_std,
        "moves_with": [names[j] if j >= 0 else "" for j in partner],
        "relation": [("opposite" if opposite_wins[i, j] else "same") if j >= 0 else ""
                     for i, j in enumerate(partner)],
        "agreement": [tied[i, j] if j >= 0 else np.nan for i, j in enumerate(partner)],
    }, index=cols.copy())

    return SensorProfile(
        sensors=names, index=index, values=X, window=window, step=step, threshold=threshold, time_unit=unit,
        change=change, rate=rate, summary=summary,
        window_mean=wframe(w_mean), window_std=wframe(w_std),
        window_mean_change=wframe(w_mean_change), window_mean_rate=wframe(w_mean_rate),
        window_std_change=wframe(w_std_change), window_std_rate=wframe(w_std_rate),
        window_growth=wframe(w_growth), window_decay=wframe(w_decay), window_count=wframe(w_count),
        correlation=correlation,
        agreement=pd.DataFrame(agree, index=cols.copy(), columns=cols.copy()),
        opposition=pd.DataFrame(oppose, index=cols.copy(), columns=cols.copy()),
        correlation_drift=pd.DataFrame(drift, index=cols.copy(), columns=cols.copy()), drift_window=d_window,
        seconds=time.perf_counter() - t0,
    )


def features(data: Any, *, window: int = 30, threshold: float = 1.0, step: Optional[int] = None,
             sensors: Optional[Sequence[str]] = None, time_unit: Any = None, flat: bool = True) -> pd.DataFrame:
    """The engineered window features of ``data`` as a DataFrame (one row per window):
    ``profile_sensors(data, ...).features(flat=flat)``. See :meth:`SensorProfile.features`."""
    return profile_sensors(data, window=window, threshold=threshold, step=step, sensors=sensors,
                           time_unit=time_unit).features(flat=flat)


def _block_mean_std(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=1) of each (window, sensor) block of ``Z`` (K, w, S), skipping NaN."""
    ok = np.isfinite(Z)
    n = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, Z, 0.0).sum(axis=1) / n
        dev = np.where(ok, Z - mean[:, None, :], 0.0)
        var = (dev * dev).sum(axis=1) / (n - 1)
    return np.where(n >= 1, mean, np.nan), np.where(n >= 2, np.sqrt(var), np.nan)


def _nanstd(a: np.ndarray) -> np.ndarray:
    """Column standard deviation (ddof=1) skipping NaN; NaN with fewer than two values."""
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, a, 0.0).sum(axis=0) / n
        dev = np.where(ok, a - mean, 0.0)
        var = (dev * dev).sum(axis=0) / (n - 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def _window_sums(a: np.ndarray, window: int, ends: np.ndarray) -> np.ndarray:
    """Sums of ``a`` (bool or finite) over the rows ``end - window + 1 .. end`` for each end."""
    c = np.zeros((len(a) + 1, a.shape[1]), dtype=np.int64 if a.dtype == bool else np.float64)
    np.cumsum(a, axis=0, out=c[1:])
    return (c[ends + 1] - c[ends + 1 - window]).astype(np.float64)
