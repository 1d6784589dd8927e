"""Tables in, sensor arrays out: load, validate, impute, scale and window.

The flow is ``load_csv`` (optional) -> :class:`DataPipeline` (``fit_prepare`` on the training
table, ``prepare`` on any later table) -> :class:`Scaler` -> :func:`make_windows`.

* :func:`load_csv` (in :mod:`msda_widgets.engine.readers`, re-exported here) reads a messy CSV
  into a DataFrame indexed by time.
* :class:`DataPipeline` finds the time axis, sorts, merges duplicate timestamps, picks the
  sensor columns, drops constant / empty ones (reported, never silent) and imputes gaps. It
  returns a :class:`SensorData`: finite float64 values, the time index, a mask of the imputed
  cells and, for every row of the caller's table, the row of ``values`` it ended up in.
* :class:`Scaler` maps sensors to ``[0, 1]`` (min-max) or z-scores, fitted on the training part.
* :func:`make_windows` turns ``(T, S)`` into ``(N, L, S)`` windows as a strided view (no copy).

Only numpy and pandas are used here. Nothing is printed; every refusal is a
:class:`~msda_widgets.errors.DataError` naming the file, column or row and saying what to do.
The caller's DataFrame is never modified.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import ConfigError, DataError, ModelFileError, NotFittedError
from .layout import WindowLayout
from .readers import (NA_MARKERS, _column_floats, _is_number, _is_text, _plural, _quote_list,
                      _resolve_time, _text_to_float, load_csv)

__all__ = [
    "load_csv",
    "DataReport",
    "SensorData",
    "DataPipeline",
    "Scaler",
    "Windows",
    "make_windows",
    "NA_MARKERS",
    "TASKS",
    "CLIP",
]

#: Window tasks understood by :func:`make_windows`.
TASKS = ("forecast", "reconstruct")
#: Scaled values are clipped to ``[-CLIP, CLIP]`` so that float32 never overflows.
CLIP = 1e6


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _default_namer(frame: pd.DataFrame) -> Callable[[int], str]:
    """Row names for messages: 1-based position, plus the index label when it is not 0..n-1."""
    index = frame.index
    plain = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1

    def namer(pos: int) -> str:
        out = f"row {pos + 1}" if plain else f"row {pos + 1} (index {index[pos]})"
        if frame.shape[1] > 1 and bool(frame.iloc[pos].isna().all()):
            out += " (the whole row is empty; df.dropna(how='all') removes such rows)"
        return out

    return namer


# --------------------------------------------------------------------------------------------
# reports and results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataReport:
    """What prepare/fit_prepare did to the table, for a status line and for tests."""

    n_rows_in: int
    n_rows: int
    time_column: str | None
    sensors: tuple[str, ...]
    dropped_constant: tuple[str, ...]
    dropped_all_missing: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    duplicate_timestamps: int
    was_sorted: bool
    n_missing: dict[str, int]
    duplicates: str = "mean"       # how duplicate timestamps were merged (for messages)
    impute: str = "interpolate"    # how missing values were filled (for messages)

    def messages(self) -> list[str]:
        """Plain-English one-liners, e.g. ``"Dropped constant column 'x'."``."""
        out: list[str] = []

        def cols(word: str, names: tuple[str, ...]) -> str:
            return f"{word} {'column' if len(names) == 1 else 'columns'} {_quote_list(names)}"

        if self.time_column is None:
            out.append("No time column: row order is the time axis.")
        if not self.was_sorted:
            out.append(f"Sorted {_plural(self.n_rows_in, 'row')} by time.")
        if self.duplicate_timestamps:
            out.append(f"Merged {_plural(self.duplicate_timestamps, 'duplicate timestamp')} "
                       f"({self.duplicates}).")
        if self.dropped_constant:
            out.append(f"Dropped {cols('constant', self.dropped_constant)}.")
        if self.dropped_all_missing:
            out.append(f"Dropped {cols('empty', self.dropped_all_missing)} (no values).")
        if self.label_columns:
            out.append(f"Kept {cols('label', self.label_columns)} out of the sensors.")
        other = tuple(c for c in self.ignored_columns if c not in self.label_columns)
        if other:
            out.append(f"Ignored {cols('non-sensor', other)}.")
        total = int(sum(self.n_missing.values()))
        if total:
            out.append(f"Imputed {_plural(total, 'missing value')} ({self.impute}).")
        return out


@dataclass(frozen=True, eq=False)
class SensorData:
    """Prepared sensor values: finite, imputed, not scaled, in time order."""

    values: np.ndarray
    index: pd.Index
    sensors: tuple[str, ...]
    missing: np.ndarray
    positions: np.ndarray
    report: DataReport


@dataclass(frozen=True, eq=False)
class Windows:
    """Sliding windows over a ``(T, S)`` series; ``inputs`` is a read-only view of it."""

    inputs: np.ndarray
    targets: np.ndarray
    judged: np.ndarray
    task: str


# --------------------------------------------------------------------------------------------
# DataPipeline
# --------------------------------------------------------------------------------------------

_STATE_FORMAT = "msda_widgets.DataPipeline"


class DataPipeline:
    """Table -> :class:`SensorData`, driven by a :class:`~msda_widgets.config.DataConfig`.

    ``fit_prepare`` decides the sensors (dropping constant / all-missing ones when
    ``drop_constant``) and learns the fill values; ``prepare`` applies the same choices to any
    later table.
    """

    def __init__(self, config: DataConfig | None = None):
        if config is None:
            config = DataConfig()
        elif isinstance(config, Mapping):
            config = DataConfig.from_dict(config)
        elif not isinstance(config, DataConfig):
            raise ConfigError(f"DataPipeline needs a DataConfig; got {type(config).__name__}.")
        self.config = config

    def __repr__(self) -> str:
        fitted = f", sensors={list(self.sensors_)!r}" if self.is_fitted else ""
        return f"DataPipeline({self.config!r}{fitted})"

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "sensors_")

    # ---- public -----------------------------------------------------------------------------

    def fit_prepare(self, df: pd.DataFrame, *, min_rows: int = 2) -> SensorData:
        """Decide the sensors and fill values from ``df`` and return it prepared."""
        return self._prepare(df, fit=True, min_rows=min_rows)

    def prepare(self, df: pd.DataFrame, *, min_rows: int = 2) -> SensorData:
        """Prepare ``df`` with the fitted sensors and fill values."""
        if not self.is_fitted:
            raise NotFittedError("This DataPipeline is not fitted yet; call fit_prepare(df) first.")
        return self._prepare(df, fit=False, min_rows=min_rows)

    def to_state(self) -> dict:
        """Plain values and numpy arrays only (for saving)."""
        fitted = self.is_fitted
        return {
            "format": _STATE_FORMAT,
            "version": 1,
            "config": self.config.to_dict(),
            "fitted": fitted,
            "sensors": list(self.sensors_) if fitted else None,
            "fill_values": np.array(self.fill_values_, dtype=np.float64) if fitted else None,
            "time_source": list(self.time_source_) if fitted and self.time_source_ is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict) -> "DataPipeline":
        """Rebuild a pipeline saved with :meth:`to_state`."""
        try:
            if not isinstance(state, Mapping) or state.get("format") != _STATE_FORMAT:
                raise ValueError("not a DataPipeline state")
            if int(state["version"]) != 1:
                raise ValueError(f"unsupported version {state['version']!r}")
            pipe = cls(DataConfig.from_dict(state["config"]))
            if state["fitted"]:
                sensors = tuple(str(s) for s in state["sensors"])
                fill = np.array(np.asarray(state["fill_values"]), dtype=np.float64).reshape(-1)
                if not sensors or fill.shape != (len(sensors),):
                    raise ValueError(f"{len(sensors)} sensors but {fill.size} fill values")
                pipe.sensors_ = sensors
                pipe.fill_values_ = fill
                src = state.get("time_source")
                pipe.time_source_ = None if src is None else tuple(str(s) for s in src)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"Invalid saved data pipeline ({exc}). The model file is damaged or "
                                 f"was not written by msda_widgets; fit the detector again.") from None
        return pipe

    # ---- the work -----------------------------------------------------------------------------

    def _prepare(self, df: Any, *, fit: bool, min_rows: int) -> SensorData:
        cfg = self.config
        frame = _as_frame(df)
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            seen: set[str] = set()
            dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise DataError(f"Column {dup!r} appears more than once. Rename or remove the repeated "
                            f"column so that every column name is unique.")
        n_in = len(frame)
        namer = _default_namer(frame)

        # -- time axis, order, duplicates
        hint = None if fit else self.time_source_
        time = _resolve_time(frame, cfg.time_column, namer, hint)
        order: np.ndarray | None = None
        starts: np.ndarray | None = None
        was_sorted = True
        if time is None:
            n = n_in
            positions = np.arange(n_in, dtype=np.int64)
            index: pd.Index = pd.RangeIndex(n_in)
            time_source = None
        else:
            i8 = time.values.asi8
            was_sorted = bool(np.all(i8[1:] >= i8[:-1])) if n_in > 1 else True
            if not was_sorted:
                order = np.argsort(i8, kind="stable")
            si8 = i8 if order is None else i8[order]
            new = np.ones(n_in, dtype=bool)
            new[1:] = si8[1:] != si8[:-1]
            starts = np.flatnonzero(new)
            n = len(starts)
            if n < n_in and cfg.duplicates == "error":
                dup_at = np.asarray(time.values.duplicated())
                j = int(np.argmax(dup_at))
                i = int(np.argmax(i8 == i8[j]))
                raise DataError(f"Timestamp {time.values[j]} appears more than once ({namer(i)} and "
                                f"{namer(j)}). Remove the repeated rows, or pass duplicates='mean', "
                                f"'first' or 'last' to merge them.")
            group = np.cumsum(new) - 1
            positions = np.empty(n_in, dtype=np.int64)
            if order is None:
                positions[:] = group
            else:
                positions[order] = group
            first_rows = starts if order is None else order[starts]
            index = time.values[first_rows].rename(time.name)
            time_source = tuple(names[j] for j in time.columns)
        if n < min_rows:
            merged = f" after merging duplicate timestamps" if n < n_in else ""
            raise DataError(f"The table needs at least {min_rows} rows (lookback + 2); got {n}{merged}. "
                            f"Use a longer table or a smaller lookback.")

        # -- sensor columns
        time_cols = set(time.columns) if time is not None else set()
        labels_lower = {c.lower() for c in cfg.labels}
        label_cols = [j for j in range(len(names)) if j not in time_cols and names[j].lower() in labels_lower]
        converted: dict[int, np.ndarray] = {}
        if fit:
            sensor_pos = self._choose_sensors(frame, names, time_cols, label_cols, converted, namer)
        else:
            sensor_pos = self._fitted_positions(frame, names)
            for j in sensor_pos:
                if j in time_cols:
                    raise DataError(f"Sensor {names[j]!r} is also the time column. Pass time_column=... "
                                    f"naming another column, or None.")
        X = np.empty((n_in, len(sensor_pos)), dtype=np.float64, order="F")
        for k, j in enumerate(sensor_pos):
            X[:, k] = converted[j] if j in converted else self._convert(frame, names, j, namer)
        sensors = [names[j] for j in sensor_pos]

        # -- sentinels, infinities, overflow
        if cfg.missing_values:
            X[np.isin(X, np.asarray(cfg.missing_values, dtype=np.float64))] = np.nan
        inf = np.isinf(X)
        if inf.any():
            k = int(np.argmax(inf.any(axis=0)))
            i = int(np.argmax(inf[:, k]))
            raise DataError(f"Column {sensors[k]!r} has an infinite value ({X[i, k]}) in {namer(i)}. "
                            f"Replace it or mark it missing (e.g. leave the cell empty).")
        with np.errstate(over="ignore", invalid="ignore"):
            span = np.fmax.reduce(X, axis=0) - np.fmin.reduce(X, axis=0) if n_in else np.zeros(X.shape[1])
        over = np.isinf(span)
        if over.any():
            k = int(np.argmax(over))
            raise DataError(f"Column {sensors[k]!r} has values too large to use (they span more than the "
                            f"largest float, about 1.8e308). Rescale that column or mark the extreme "
                            f"values missing.")

        # -- merge duplicates (before judging constant columns: that is what the model sees)
        if order is not None:
            X = X[order]
        if starts is not None and n < n_in:
            X = _merge_rows(X, starts, cfg.duplicates)
        X = np.ascontiguousarray(X, dtype=np.float64)
        missing = np.isnan(X)

        dropped_constant: list[str] = []
        dropped_empty: list[str] = []
        if fit:
            count = (~missing).sum(axis=0)
            with np.errstate(invalid="ignore"):
                constant = (count > 0) & (np.fmax.reduce(X, axis=0) == np.fmin.reduce(X, axis=0))
            empty = count == 0
            if not cfg.drop_constant and (constant.any() or empty.any()):
                if empty.any():
                    k = int(np.argmax(empty))
                    raise DataError(f"Column {sensors[k]!r} has no values (every cell is missing). Remove "
                                    f"it, or pass drop_constant=True to drop it automatically.")
                k = int(np.argmax(constant))
                value = np.fmax.reduce(X[:, k])
                raise DataError(f"Column {sensors[k]!r} is constant (every value is {value:g}), so it "
                                f"carries no information. Remove it, or pass drop_constant=True to drop it "
                                f"automatically.")
            dropped_constant = [s for s, c in zip(sensors, constant) if c]
            dropped_empty = [s for s, e in zip(sensors, empty) if e]
            keep = ~(constant | empty)
            if not keep.any():
                parts = []
                if dropped_constant:
                    parts.append(f"constant: {_quote_list(dropped_constant)}")
                if dropped_empty:
                    parts.append(f"all missing: {_quote_list(dropped_empty)}")
                raise DataError(f"No usable sensor column is left after dropping {'; '.join(parts)}. A "
                                f"sensor column must be numeric and vary over time; check the table or "
                                f"the sensors=... setting.")
            if not keep.all():
                X = np.ascontiguousarray(X[:, keep])
                missing = np.ascontiguousarray(missing[:, keep])
                sensor_pos = [j for j, k in zip(sensor_pos, keep) if k]
                sensors = [names[j] for j in sensor_pos]
            fill = _fill_values(X, cfg.impute)
        else:
            fill = self.fill_values_
            empty = ~(~missing).any(axis=0) if n else np.zeros(X.shape[1], dtype=bool)
            if empty.any() and cfg.impute in ("ffill", "bfill", "interpolate"):
                k = int(np.argmax(empty))
                raise DataError(f"Sensor {sensors[k]!r} has no values in this table, so impute="
                                f"{cfg.impute!r} cannot fill it. Provide values for it, or use impute='mean' "
                                f"or 'median' (which use the training data's statistics).")

        values = _impute(X, missing, cfg.impute, fill)

        used = set(sensor_pos) | time_cols
        dropped = set(dropped_constant) | set(dropped_empty)
        report = DataReport(
            n_rows_in=n_in,
            n_rows=n,
            time_column=None if time is None else time.name,
            sensors=tuple(sensors),
            dropped_constant=tuple(dropped_constant),
            dropped_all_missing=tuple(dropped_empty),
            ignored_columns=tuple(names[j] for j in range(len(names)) if j not in used and names[j] not in dropped),
            label_columns=tuple(names[j] for j in label_cols if j not in used),
            duplicate_timestamps=n_in - n,
            was_sorted=was_sorted,
            n_missing={s: int(c) for s, c in zip(sensors, missing.sum(axis=0))},
            duplicates=cfg.duplicates,
            impute=cfg.impute,
        )
        if fit:
            self.sensors_ = tuple(sensors)
            self.fill_values_ = fill
            self.time_source_ = time_source
        return SensorData(values=values, index=index, sensors=tuple(sensors), missing=missing,
                          positions=positions, report=report)

    # ---- columns ------------------------------------------------------------------------------

    @staticmethod
    def _convert(frame: pd.DataFrame, names: list[str], j: int, namer: Callable[[int], str]) -> np.ndarray:
        """Column j as float64; DataError when it holds text."""
        s = frame.iloc[:, j]
        if _is_number(s):
            return _column_floats(s)
        if not _is_text(s):
            raise DataError(f"Column {names[j]!r} holds {s.dtype} values, not numbers. Choose numeric "
                            f"sensor columns (sensors=[...]).")
        values, bad = _text_to_float(s)
        if bad.any():
            raise _text_error(names[j], s, bad, namer)
        return values

    def _choose_sensors(self, frame: pd.DataFrame, names: list[str], time_cols: set[int],
                        label_cols: list[int], converted: dict[int, np.ndarray],
                        namer: Callable[[int], str]) -> list[int]:
        cfg = self.config
        if cfg.sensors is not None:
            pos = {n: j for j, n in enumerate(names)}
            absent = [s for s in cfg.sensors if s not in pos]
            if absent:
                raise DataError(f"Sensor {'column' if len(absent) == 1 else 'columns'} {_quote_list(absent)} "
                                f"not found. Available numeric columns: "
                                f"{_quote_list(self._numeric_names(frame, names, time_cols))}.")
            chosen = [pos[s] for s in cfg.sensors]
            for j in chosen:
                s = frame.iloc[:, j]
                if j in time_cols:
                    raise DataError(f"Sensor {names[j]!r} is the time column. Remove it from sensors, or "
                                    f"pass time_column=... naming another column (or None).")
                if _is_number(s):
                    converted[j] = _column_floats(s)
                    continue
                values, bad = _text_to_float(s) if _is_text(s) else (None, None)
                if values is None or (bad.any() and bad.sum() >= (~np.isnan(values)).sum()):
                    raise DataError(f"Sensor column {names[j]!r} is not numeric. Available numeric "
                                    f"columns: {_quote_list(self._numeric_names(frame, names, time_cols))}.")
                if bad.any():
                    raise _text_error(names[j], s, bad, namer)
                converted[j] = values
            return list(dict.fromkeys(chosen))
        chosen = []
        skipped = set(time_cols) | set(label_cols)
        for j in range(len(names)):
            if j in skipped:
                continue
            s = frame.iloc[:, j]
            if _is_number(s):
                chosen.append(j)
            elif _is_text(s):
                values, bad = _text_to_float(s)
                n_bad = int(bad.sum())
                n_ok = int((~np.isnan(values)).sum())
                if n_bad == 0:
                    converted[j] = values
                    chosen.append(j)
                elif n_ok > n_bad:
                    raise _text_error(names[j], s, bad, namer)
        if not chosen:
            seen = [f"{names[j]!r} ({self._kind(frame.iloc[:, j], j, time_cols, label_cols)})"
                    for j in range(len(names))]
            none = "(none besides the time axis)" if time_cols or isinstance(frame.index, pd.DatetimeIndex) else "(none)"
            raise DataError(f"No sensor column found. Columns seen: {', '.join(seen) or none}. A sensor "
                            f"column must be numeric (numbers, with missing cells left empty or 'NA'), and "
                            f"must not be the time column or a label column.")
        return chosen

    def _fitted_positions(self, frame: pd.DataFrame, names: list[str]) -> list[int]:
        pos = {n: j for j, n in enumerate(names)}
        absent = [s for s in self.sensors_ if s not in pos]
        if absent:
            raise DataError(f"Sensor {'column' if len(absent) == 1 else 'columns'} {_quote_list(absent)} "
                            f"used in training {'is' if len(absent) == 1 else 'are'} missing from this "
                            f"table. Add {'it' if len(absent) == 1 else 'them'}; the table has "
                            f"{_quote_list(names)}.")
        return [pos[s] for s in self.sensors_]

    @staticmethod
    def _kind(s: pd.Series, j: int, time_cols: set[int], label_cols: list[int]) -> str:
        if j in time_cols:
            return "time"
        if j in label_cols:
            return "label"
        return "text" if _is_text(s) else str(s.dtype)

    @staticmethod
    def _numeric_names(frame: pd.DataFrame, names: list[str], time_cols: set[int]) -> list[str]:
        out = []
        for j in range(len(names)):
            s = frame.iloc[:, j]
            if j in time_cols:
                continue
            if _is_number(s) or (_is_text(s) and not _text_to_float(s)[1].any()):
                out.append(names[j])
        return out


def _text_error(column: str, s: pd.Series, bad: np.ndarray, namer: Callable[[int], str]) -> DataError:
    i = int(np.argmax(bad))
    return DataError(f"Column {column!r} is mostly numbers but has text: {str(s.iloc[i])!r} in {namer(i)} "
                     f"({_plural(int(bad.sum()), 'such cell')}). Clean the column, or mark those values "
                     f"missing with missing_values=[...] / leave the cells empty.")


def _as_frame(df: Any) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if isinstance(df, pd.Series):
        return df.to_frame()
    if isinstance(df, np.ndarray) and df.ndim in (1, 2):
        arr = df.reshape(len(df), -1)
        return pd.DataFrame(arr, columns=[f"sensor_{k}" for k in range(arr.shape[1])])
    raise DataError(f"Expected a pandas DataFrame (one column per sensor); got {type(df).__name__}. Wrap "
                    f"your data in pd.DataFrame(...) or read a file with load_csv(...).")


def _merge_rows(X: np.ndarray, starts: np.ndarray, mode: str) -> np.ndarray:
    """Rows sorted by time, groups starting at ``starts`` -> one row per group."""
    if mode == "first":
        return X[starts]
    if mode == "last":
        ends = np.append(starts[1:], X.shape[0]) - 1
        return X[ends]
    present = ~np.isnan(X)
    sums = np.add.reduceat(np.where(present, X, 0.0), starts, axis=0)
    counts = np.add.reduceat(present.astype(np.int64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _fill_values(X: np.ndarray, mode: str) -> np.ndarray:
    if mode not in ("mean", "median"):
        return np.zeros(X.shape[1], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if mode == "mean":
            return np.asarray(pd.DataFrame(X).mean(axis=0).to_numpy(), dtype=np.float64)
        return np.asarray(np.nanmedian(X, axis=0), dtype=np.float64)


def _impute(X: np.ndarray, missing: np.ndarray, mode: str, fill: np.ndarray) -> np.ndarray:
    if not missing.any():
        return np.ascontiguousarray(X, dtype=np.float64)
    if mode == "zero":
        out = np.where(missing, 0.0, X)
    elif mode in ("mean", "median"):
        out = np.where(missing, fill[None, :], X)
    elif mode == "ffill":
        out = pd.DataFrame(X).ffill().bfill().to_numpy(dtype=np.float64)
    elif mode == "bfill":
        out = pd.DataFrame(X).bfill().ffill().to_numpy(dtype=np.float64)
    else:  # interpolate: linear on the row order, edges held at the nearest value
        out = np.array(X, dtype=np.float64, order="F")  # column-contiguous for the per-column work
        gaps = np.asfortranarray(missing)
        for k in np.flatnonzero(gaps.any(axis=0)):
            col, gap = out[:, k], gaps[:, k]
            where, known = np.flatnonzero(gap), np.flatnonzero(~gap)
            col[where] = np.interp(where, known, col[known])
    return np.ascontiguousarray(out, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# scaling
# --------------------------------------------------------------------------------------------

class Scaler:
    """Per-sensor affine scaling: ``(v - offset_) / scale_``.

    ``"minmax"`` maps the fit data to ``[0, 1]``; ``"standard"`` to zero mean and unit variance.
    A zero scale (constant sensor) becomes 1.
    """

    KINDS = ("minmax", "standard")

    def __init__(self, kind: str = "minmax"):
        if kind not in self.KINDS:
            raise ConfigError(f"Scaler kind={kind!r} is not one of {', '.join(map(repr, self.KINDS))}.")
        self.kind = kind

    def __repr__(self) -> str:
        return f"Scaler(kind={self.kind!r}{', fitted' if hasattr(self, 'offset_') else ''})"

    def fit(self, values: np.ndarray) -> "Scaler":
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
            raise DataError(f"Scaler.fit needs a (time, sensors) array with at least one row; got shape "
                            f"{v.shape}.")
        bad = ~np.isfinite(v)
        if bad.any():
            k = int(np.argmax(bad.any(axis=0)))
            i = int(np.argmax(bad[:, k]))
            raise DataError(f"Scaler.fit got a missing or infinite value ({v[i, k]}) in sensor {k}, row "
                            f"{i + 1}. Prepare the data first (DataPipeline imputes missing values).")
        with np.errstate(over="ignore", invalid="ignore"):
            if self.kind == "minmax":
                offset = v.min(axis=0)
                scale = v.max(axis=0) - offset
            else:
                top = np.abs(v).max(axis=0)
                top[top == 0] = 1.0
                unit = v / top
                offset = unit.mean(axis=0) * top
                scale = unit.std(axis=0) * top
        if not np.all(np.isfinite(scale)):
            k = int(np.argmax(~np.isfinite(scale)))
            raise DataError(f"Sensor {k} has values too large to scale (their spread overflows float64). "
                            f"Rescale that sensor or mark the extreme values missing.")
        scale = np.where(scale == 0, 1.0, scale)
        self.offset_ = np.ascontiguousarray(offset, dtype=np.float64)
        self.scale_ = np.ascontiguousarray(scale, dtype=np.float64)
        return self

    def _check(self, values: Any) -> np.ndarray:
        if not hasattr(self, "offset_"):
            raise NotFittedError("This Scaler is not fitted yet; call fit(values) first.")
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 0 or v.shape[-1] != self.offset_.shape[0]:
            raise DataError(f"Expected {self.offset_.shape[0]} sensors in the last axis; got shape {v.shape}.")
        return v

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float32 (C-contiguous), clipped to ``[-CLIP, CLIP]``."""
        v = self._check(values)
        with np.errstate(over="ignore", invalid="ignore"):
            out = (v - self.offset_) / self.scale_
        np.clip(out, -CLIP, CLIP, out=out)
        return np.ascontiguousarray(out, dtype=np.float32)

    def inverse_transform(self, values: np.ndarray) -> np.ndarray:
        """Back to sensor units (float64)."""
        v = self._check(values)
        return np.ascontiguousarray(v * self.scale_ + self.offset_, dtype=np.float64)

    def to_state(self) -> dict:
        fitted = hasattr(self, "offset_")
        return {"kind": self.kind,
                "offset": np.array(self.offset_) if fitted else None,
                "scale": np.array(self.scale_) if fitted else None}

    @classmethod
    def from_state(cls, state: dict) -> "Scaler":
        try:
            scaler = cls(state["kind"])
            if state.get("offset") is not None:
                offset = np.array(np.asarray(state["offset"]), dtype=np.float64).reshape(-1)
                scale = np.array(np.asarray(state["scale"]), dtype=np.float64).reshape(-1)
                if offset.shape != scale.shape or not (np.isfinite(offset).all() and np.isfinite(scale).all()
                                                       and (scale != 0).all()):
                    raise ValueError("offset and scale must be finite arrays of one length, scale non-zero")
                scaler.offset_, scaler.scale_ = offset, scale
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise ModelFileError(f"Invalid saved scaler ({exc}). The model file is damaged or was not "
                                 f"written by msda_widgets; fit the detector again.") from None
        return scaler


# --------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------

def make_windows(values: np.ndarray, lookback: int, task: str) -> Windows:
    """Sliding windows of ``lookback`` rows as a read-only strided view (no copy), split into
    what a network reads and what its output is compared with (see
    :class:`~msda_widgets.engine.layout.WindowLayout`, which defines the layout).

    forecast: rows ``i..i+L-1`` predict row ``i+L``; ``N = T - L``; ``judged = L + arange(N)``.
    reconstruct: rows ``i..i+L-1`` are reconstructed; ``N = T - L + 1``; ``judged = L - 1 + arange(N)``.
    """
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not one of {', '.join(map(repr, TASKS))}.")
    layout = WindowLayout(lookback, task)
    v = np.asarray(values)
    windows = layout.windows(v)
    inputs, targets = layout.split(windows)
    if task == "forecast":
        targets = np.asarray(targets)
    return Windows(inputs=inputs, targets=targets, judged=layout.judged(len(v)), task=task)
