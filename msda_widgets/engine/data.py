"""Tables in, sensor arrays out: load, validate, impute, scale and window.

The flow is ``load_csv`` (optional) -> :class:`DataPipeline` (``fit_prepare`` on the training
table, ``prepare`` on any later table) -> :class:`Scaler` -> :func:`make_windows`.

* :func:`load_csv` reads a messy CSV (separator, decimal commas, BOM, Latin-1, CRLF, empty
  trailing rows/columns, split date + time-of-day columns, sentinels) into a DataFrame indexed
  by time.
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

import gzip
import io
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from ..config import DataConfig
from ..errors import ConfigError, DataError, ModelFileError, NotFittedError
from .layout import WindowLayout

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

#: Cell texts that mean "missing" (compared after stripping, case-insensitive).
NA_MARKERS = ("", "na", "n/a", "nan", "-nan", "null", "none", "nil", "-", "--", "?", "#n/a",
              "#na", "<na>", "missing")
#: Window tasks understood by :func:`make_windows`.
TASKS = ("forecast", "reconstruct")
#: Scaled values are clipped to ``[-CLIP, CLIP]`` so that float32 never overflows.
CLIP = 1e6

_READ_NA = sorted({v for m in NA_MARKERS for v in (m, m.upper(), m.title())} | {"NaN", "#N/A", "N/A"})
_SEPARATORS = (",", ";", "\t", "|")
_EXCEL_XLSX = b"PK\x03\x04"
_EXCEL_XLS = b"\xd0\xcf\x11\xe0"
#: Leading bytes of common files that get renamed or saved as .csv by mistake.
_SIGNATURES = ((b"%PDF-", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
               (b"GIF8", "a GIF image"), (b"PAR1", "a Parquet file (read it with pandas.read_parquet)"),
               (b"SQLite format 3\x00", "an SQLite database"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
               (b"Rar!", "a RAR archive"), (b"\x93NUMPY", "a NumPy .npy file (load it with numpy.load)"))
_SAMPLE = 200  # values looked at when guessing what a text column holds

# Words that make a text column a timestamp candidate, and those of a separate time-of-day column.
_TIME_WORDS = {"date", "time", "timestamp", "timestamps", "datetime", "ts", "dt", "datum", "zeit",
               "fecha", "hora", "tiempo", "heure", "horodatage", "stamp"}
# Whole (normalised) column names of a numeric Unix-time column, and unit suffixes allowed after them.
_EPOCH_NAMES = {"timestamp", "timestamps", "time", "time_stamp", "epoch", "epoch_time", "unix", "unix_time",
                "unixtime", "unix_timestamp", "posix", "posix_time", "ts", "datetime", "date_time", "dt"}
_EPOCH_UNITS = {"s", "sec", "secs", "seconds", "ms", "millis", "us", "ns"}
_DATE_WORDS = {"date", "day", "datum", "fecha", "jour", "giorno"}
_TOD_WORDS = {"time", "hour", "zeit", "hora", "heure", "ora", "clock", "uhrzeit"}
_TOD_RE = r"^(\d{1,2})[:.](\d{2})(?:[:.](\d{2}(?:[.,]\d+)?))?$"
_COMMA_NUMBER_RE = r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d*),\d+(?:[eE][+-]?\d+)?$"
_THOUSANDS_RE = r"^[+-]?\d{1,3}(?:,\d{3})+\.\d+$|^[+-]?\d{1,3}(?:,\d{3}){2,}$"  # unambiguous 1,234.5
_GROUPED_RE = r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$"  # 1,000 / 12,345.5: thousands in a "." file
#: A time of day followed by a UTC offset or Z (``03:00 +01:00``, ``03:00:00Z``): a time-zone-aware stamp.
_ZONE_SUFFIX_RE = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|(?:UTC|GMT)?[+-]\d{2}(?::?\d{2})?)$"
_NAIVE_CHECKS = 1000  # distinct leftover stamps parsed one by one at most (see _naive_alone)
_COMMA_TOKEN = re.compile(r"^[+-]?\d*,\d+$")
_DOT_TOKEN = re.compile(r"^[+-]?\d*\.\d+(?:[eE][+-]?\d+)?$")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def _quote_list(names: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(repr(str(n)) for n in list(names)[:limit])
    more = len(names) - limit
    return shown + (f", ... ({more} more)" if more > 0 else "") if names else "(none)"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _words(name: str) -> set[str]:
    """Lower-case words of a column name: ``LOCAL_DATE`` -> {local, date}, ``DateTime`` -> {date, time}."""
    return {w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(name))}


def _is_text(s: pd.Series) -> bool:
    return (ptypes.is_object_dtype(s.dtype) or ptypes.is_string_dtype(s.dtype)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def _is_number(s: pd.Series) -> bool:
    return ptypes.is_numeric_dtype(s.dtype) and not ptypes.is_complex_dtype(s.dtype)


def _is_missing_scalar(v: Any) -> bool:
    try:
        if pd.isna(v):
            return True
    except (TypeError, ValueError):
        return False
    return isinstance(v, str) and v.strip().lower() in NA_MARKERS


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


def _sample_text(s: pd.Series) -> pd.Series:
    """Up to ``_SAMPLE`` non-missing values, spread evenly over the column, as stripped strings."""
    st = s.astype("string").str.strip()
    present = st.notna() & ~st.str.lower().isin(NA_MARKERS).fillna(False)
    pos = np.flatnonzero(present.to_numpy(dtype=bool, na_value=False))
    if len(pos) > _SAMPLE:
        pos = pos[np.linspace(0, len(pos) - 1, _SAMPLE).astype(np.int64)]
    return st.iloc[pos].astype(object)


def _text_to_float(s: pd.Series, decimal: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Text column -> (float64 values, mask of cells that are present but not numbers).

    NA markers become NaN; decimal commas (``3,14``, ``1.234,5``) are understood, and so are comma
    thousands separators when a column shows them unambiguously (``1,234.5``, ``1,234,567``).
    ``decimal``: the file's decimal separator when known (load_csv). With ``"."``, a column whose
    comma values are all grouped in thousands (``"1,000"``, ``"12,345.5"``) is read as thousands,
    never as decimal commas; a column that also shows a plain decimal comma (``"3,14"``) keeps
    the decimal-comma reading.
    """
    st = s.astype("string").str.strip()
    na = (st.isna() | st.str.lower().isin(NA_MARKERS)).to_numpy(dtype=bool, na_value=True)
    cleaned = st.mask(na)
    num = pd.to_numeric(cleaned, errors="coerce")
    values = np.array(num.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)  # writable copy
    bad = np.isnan(values) & ~na
    if bad.any():
        cand = cleaned[bad]
        comma = cand.str.match(_COMMA_NUMBER_RE).to_numpy(dtype=bool, na_value=False)
        grouped = cand.str.match(_GROUPED_RE).to_numpy(dtype=bool, na_value=False)
        dot_file_thousands = decimal == "." and grouped.any() and not (comma & ~grouped).any()
        if dot_file_thousands or cand.str.match(_THOUSANDS_RE).any():  # every comma groups thousands
            comma = cand.str.match(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$").to_numpy(dtype=bool, na_value=False)
            fixed = cand[comma].str.replace(",", "", regex=False)
            conv = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            values[np.flatnonzero(bad)[comma]] = conv
        elif comma.any():
            fixed = cand[comma].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            conv = pd.to_numeric(fixed, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            where = np.flatnonzero(bad)[comma]
            values[where] = conv
        bad = np.isnan(values) & ~na
    return values, bad


def _column_floats(s: pd.Series) -> np.ndarray:
    """A numeric (or boolean) column as a float64 array with NaN for missing cells."""
    return np.asarray(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# timestamps
# --------------------------------------------------------------------------------------------

@dataclass
class _Time:
    name: str                     # the name of the resulting DatetimeIndex
    values: pd.DatetimeIndex      # one timestamp per caller row, caller order
    columns: tuple[int, ...]      # positions of the columns used (empty: the index)


def _to_datetime(values: Any, **kwargs: Any) -> pd.DatetimeIndex:
    """pd.to_datetime with errors="coerce" that converts mixed time zones to UTC."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = pd.to_datetime(values, errors="coerce", **kwargs)
        except (ValueError, TypeError) as exc:  # pandas >= 3: "Mixed timezones detected"
            if "utc" not in str(exc).lower() and "timezone" not in str(exc).lower():
                raise
            out = pd.to_datetime(values, errors="coerce", utc=True, **kwargs)
        if not ptypes.is_datetime64_any_dtype(getattr(out, "dtype", None)):  # pandas 2: object
            out = pd.to_datetime(values, errors="coerce", utc=True, **kwargs)
    return pd.DatetimeIndex(out)


def _naive_alone(values: pd.Series) -> np.ndarray:
    """Mask of the stamps that have no time zone when read one by one (read together, pandas turns a
    mix of aware and naive stamps into UTC without a word). A value ending in a UTC offset or Z after
    its time of day counts as aware without parsing; at most ``_NAIVE_CHECKS`` distinct other values
    are parsed alone, and any beyond them count as naive (refused rather than guessed)."""
    texts = values.astype("string").str.strip()
    zoned = texts.str.contains(_ZONE_SUFFIX_RE, regex=True).to_numpy(dtype=bool, na_value=False)
    naive = ~zoned
    checked: dict[str, bool] = {}
    for k in np.flatnonzero(naive):
        text = texts.iloc[k]
        if pd.isna(text):
            naive[k] = False  # a missing value: reported as such by _parse_times
            continue
        if text not in checked and len(checked) < _NAIVE_CHECKS:
            alone = _to_datetime([text], format="mixed")
            checked[text] = bool(alone.isna().all()) or alone.tz is None
        naive[k] = checked.get(text, True)
    return naive


def _parse_text_times(s: pd.Series) -> pd.DatetimeIndex:
    present = ~s.isna().to_numpy(dtype=bool)
    dt = _to_datetime(s)
    if dt.tz is not None and ptypes.is_object_dtype(s.dtype):
        # datetime objects in several time zones: pandas keeps the first one; use UTC instead
        zones = pd.unique(s[present].map(lambda v: str(getattr(v, "tzinfo", None))))
        if len(zones) > 1:
            dt = dt.tz_convert("UTC")
    bad = dt.isna() & present
    if bad.any():  # perhaps day-first (13/10/2004) with a first value that looked month-first
        alt = _to_datetime(s, dayfirst=True)
        if (alt.isna() & present).sum() < bad.sum():
            dt, bad = alt, alt.isna() & present
    if bad.any():  # a few values in another layout (e.g. a date without its time): one by one
        where = np.flatnonzero(bad)
        if dt.tz is not None:  # naive stamps among aware ones stay NaT: refused by _zone_mismatch
            where = where[~_naive_alone(s.iloc[where])]
        sub = _to_datetime(s.iloc[where], format="mixed", utc=dt.tz is not None)
        if dt.tz is not None and _to_datetime(s.iloc[where], format="mixed").tz is None:
            sub = dt[:0]  # naive stamps among aware ones: refused (_zone_mismatch), never taken as UTC
        if len(sub) and (sub.tz is None) == (dt.tz is None):
            i8 = dt.as_unit("ns").asi8.copy()
            i8[where] = sub.as_unit("ns").asi8
            fixed = pd.DatetimeIndex(i8.view("M8[ns]"))
            dt = fixed if dt.tz is None else fixed.tz_localize("UTC").tz_convert(dt.tz)
    return dt


def _zone_mismatch(s: pd.Series, dt: pd.DatetimeIndex, i: int, column: str,
                   namer: Callable[[int], str]) -> DataError | None:
    """The error for a value that is readable alone but mixes time-zone-aware and naive stamps."""
    alone = _to_datetime([str(s.iloc[i]).strip()], format="mixed")
    ok = np.flatnonzero(~np.asarray(dt.isna()))
    if alone.isna().all() or not len(ok) or (alone.tz is None) == (dt.tz is None):
        return None
    j = int(ok[0])
    with_zone, without = (s.iloc[i], s.iloc[j]) if alone.tz is not None else (s.iloc[j], s.iloc[i])
    rows = (namer(i), namer(j)) if alone.tz is not None else (namer(j), namer(i))
    return DataError(f"Column {column!r} mixes timestamps with a time zone ({str(with_zone)!r} in {rows[0]}) "
                     f"and without one ({str(without)!r} in {rows[1]}), so their order is ambiguous. Write "
                     f"every timestamp with its UTC offset (e.g. +01:00), or none of them.")


def _parse_times(s: pd.Series, column: str, namer: Callable[[int], str]) -> pd.DatetimeIndex:
    """One column -> DatetimeIndex (caller order); DataError naming the first bad row."""
    if ptypes.is_datetime64_any_dtype(s.dtype):
        dt = pd.DatetimeIndex(s)
    elif ptypes.is_bool_dtype(s.dtype):
        raise DataError(f"Column {column!r} holds True/False values, not timestamps. Pass "
                        f"time_column=None to use row order, or name the time column.")
    elif _is_number(s):
        v = _column_floats(s)
        finite = v[np.isfinite(v)]
        top = float(np.abs(finite).max()) if finite.size else 0.0
        unit = "s" if top < 1e11 else "ms" if top < 1e14 else "us" if top < 1e17 else "ns"
        dt = _to_datetime(pd.Series(np.where(np.isfinite(v), v, np.nan)), unit=unit)
    else:
        dt = _parse_text_times(s)
    bad = np.asarray(dt.isna())
    if bad.any():
        i = int(np.argmax(bad))
        raw = s.iloc[i]
        if _is_missing_scalar(raw):
            raise DataError(f"Column {column!r} has no timestamp in {namer(i)}. Fill it in or drop that "
                            f"row, or pass time_column=None to use row order instead.")
        mixed = _zone_mismatch(s, dt, i, column, namer)
        if mixed is not None:
            raise mixed
        raise DataError(f"Column {column!r}: cannot read {str(raw)!r} in {namer(i)} as a date/time. "
                        f"Fix that value, or pass time_column=None to use row order (or name another "
                        f"column with time_column=...).")
    return dt


def _combine_date_time(frame: pd.DataFrame, jd: int, jt: int, namer: Callable[[int], str]) -> _Time:
    names = [str(c) for c in frame.columns]
    date = _parse_times(frame.iloc[:, jd], names[jd], namer)
    st = frame.iloc[:, jt].astype("string").str.strip()
    parts = st.str.extract(_TOD_RE)
    secs = parts[2].fillna("00").str.replace(",", ".", regex=False)
    delta = pd.to_timedelta(parts[0] + ":" + parts[1] + ":" + secs, errors="coerce")
    bad = np.asarray(delta.isna())
    if bad.any():
        i = int(np.argmax(bad))
        raw = frame.iloc[i, jt]
        what = "has no time of day" if _is_missing_scalar(raw) else f"cannot read {str(raw)!r} as a time of day"
        raise DataError(f"Column {names[jt]!r} {what} in {namer(i)} (expected e.g. 18:00:00 or 18.00.00). "
                        f"Fix that value, or pass time_column={names[jd]!r} or None.")
    values = date.normalize() + pd.TimedeltaIndex(delta.to_numpy())
    return _Time(f"{names[jd]} {names[jt]}", pd.DatetimeIndex(values), (jd, jt))


def _looks_numeric(sample: pd.Series) -> bool:
    if sample.empty:
        return True
    fixed = sample.str.replace(",", ".", regex=False)
    return bool(pd.to_numeric(fixed, errors="coerce").notna().mean() >= 0.9)


def _date_fraction(sample: pd.Series, strict: bool) -> float:
    if sample.empty:
        return 0.0
    usable = sample.str.contains(r"\d", regex=True)
    if strict:
        usable &= sample.str.len() >= 6
    if not usable.any():
        return 0.0
    parsed = _to_datetime(sample[usable].tolist(), format="mixed", utc=True)
    return float(parsed.notna().sum()) / len(sample)


def _tod_fraction(sample: pd.Series) -> float:
    return float(sample.str.match(_TOD_RE).mean()) if not sample.empty else 0.0


def _find_column(frame: pd.DataFrame, name: str) -> int | None:
    for j, c in enumerate(frame.columns):
        if str(c) == name:
            return j
    return None


def _index_time(frame: pd.DataFrame, namer: Callable[[int], str]) -> _Time | None:
    idx = frame.index
    if isinstance(idx, pd.PeriodIndex):
        idx = idx.to_timestamp()
    if not isinstance(idx, pd.DatetimeIndex):
        return None
    name = str(idx.name) if idx.name is not None else "index"
    bad = np.asarray(idx.isna())
    if bad.any():
        raise DataError(f"The DatetimeIndex has no timestamp (NaT) in {namer(int(np.argmax(bad)))}. Fill it "
                        f"in or drop that row, or pass time_column=None to use row order.")
    return _Time(name, idx, ())


def _named_time(frame: pd.DataFrame, name: str, namer: Callable[[int], str]) -> _Time:
    j = _find_column(frame, name)
    if j is None:
        if frame.index.name is not None and str(frame.index.name) == name:
            idx = frame.index
            if not isinstance(idx, (pd.DatetimeIndex, pd.PeriodIndex)):
                idx = _parse_times(pd.Series(idx), name, namer)
                return _Time(name, idx.rename(name), ())
            found = _index_time(frame, namer)
            assert found is not None
            return found
        raise DataError(f"time_column={name!r} is not a column of the table. Available columns: "
                        f"{_quote_list([str(c) for c in frame.columns])}. Pass time_column='auto' to find "
                        f"it automatically, or None to use row order.")
    return _Time(name, _parse_times(frame.iloc[:, j], name, namer), (j,))


def _auto_time(frame: pd.DataFrame, namer: Callable[[int], str]) -> _Time | None:
    found = _index_time(frame, namer)
    if found is not None:
        return found
    names = [str(c) for c in frame.columns]
    for j in range(frame.shape[1]):
        if ptypes.is_datetime64_any_dtype(frame.iloc[:, j].dtype):
            return _Time(names[j], _parse_times(frame.iloc[:, j], names[j], namer), (j,))
    samples = {j: _sample_text(frame.iloc[:, j]) for j in range(frame.shape[1]) if _is_text(frame.iloc[:, j])}
    if not samples:
        return _epoch_time(frame, names, namer)
    words = {j: _words(names[j]) for j in samples}
    tod = {j for j, smp in samples.items() if not smp.empty and _tod_fraction(smp) >= 0.9}
    # a date column plus a separate time-of-day column (e.g. UCI AirQuality: Date + Time)
    tod_named = [j for j in samples if j in tod and words[j] & _TOD_WORDS]
    if tod_named:
        for j in samples:
            if j in tod or _looks_numeric(samples[j]):
                continue
            if words[j] & _DATE_WORDS and _date_fraction(samples[j], strict=False) >= 0.9:
                return _combine_date_time(frame, j, tod_named[0], namer)
    # a single column whose name says time and whose values are mostly dates
    for j, smp in samples.items():
        if j in tod or not (words[j] & (_TIME_WORDS | _DATE_WORDS)) or _looks_numeric(smp):
            continue
        if _date_fraction(smp, strict=False) >= 0.5:
            return _Time(names[j], _parse_times(frame.iloc[:, j], names[j], namer), (j,))
    # any text column whose values are dates
    for j, smp in samples.items():
        if j in tod or _looks_numeric(smp):
            continue
        if _date_fraction(smp, strict=True) >= 0.9:
            return _Time(names[j], _parse_times(frame.iloc[:, j], names[j], namer), (j,))
    return _epoch_time(frame, names, namer)


def _epoch_name(name: str) -> bool:
    """True when the whole column name says "Unix time": ``timestamp``, ``unixTime``, ``epoch_ms``...
    (not a name that merely contains a time word, such as ``run_time_ns``)."""
    parts = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", str(name))]
    if len(parts) > 1 and parts[-1] in _EPOCH_UNITS:
        parts = parts[:-1]  # a unit suffix: timestamp_ms, time_s
    return "_".join(parts) in _EPOCH_NAMES


def _epoch_time(frame: pd.DataFrame, names: list[str], namer: Callable[[int], str]) -> _Time | None:
    """A numeric column named as a time (the whole name: ``timestamp``, ``epoch``, ``unix_time``...)
    holding non-decreasing Unix times of 1990-2100 in seconds, milliseconds, microseconds or
    nanoseconds: the time axis, not a sensor."""
    for j in range(frame.shape[1]):
        s = frame.iloc[:, j]
        if not _is_number(s) or ptypes.is_bool_dtype(s.dtype) or not _epoch_name(names[j]):
            continue
        v = _column_floats(s)
        if not len(v) or not np.isfinite(v).all():
            continue
        if not bool(np.all(v[1:] >= v[:-1])):
            continue  # not in time order: a sensor (a duration, a counter) holding large numbers
        low, high = float(v.min()), float(v.max())
        if any(6.3e8 * f <= low and high <= 4.2e9 * f for f in (1, 1e3, 1e6, 1e9)):
            return _Time(names[j], _parse_times(s, names[j], namer), (j,))
    return None


def _resolve_time(frame: pd.DataFrame, spec: str | None, namer: Callable[[int], str],
                  hint: tuple[str, ...] | None = None) -> _Time | None:
    """Find the time axis. ``hint`` = what fit_prepare used: () for the index, or column names."""
    if spec is None:
        return None
    if spec != "auto":
        return _named_time(frame, spec, namer)
    if hint is not None:
        if hint == () and isinstance(frame.index, (pd.DatetimeIndex, pd.PeriodIndex)):
            return _index_time(frame, namer)
        pos = [_find_column(frame, h) for h in hint]
        if hint and all(p is not None for p in pos):
            if len(pos) == 2:
                return _combine_date_time(frame, pos[0], pos[1], namer)  # type: ignore[arg-type]
            return _named_time(frame, hint[0], namer)
    return _auto_time(frame, namer)


# --------------------------------------------------------------------------------------------
# load_csv
# --------------------------------------------------------------------------------------------

def _read_source(source: Any) -> tuple[str, bytes | str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "The CSV data", bytes(source)
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        return "The CSV text", source  # CSV content given as a string
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise DataError(f"File not found: '{path}'. Check the path (relative paths start in "
                            f"'{Path.cwd()}').")
        if path.is_dir():
            raise DataError(f"'{path}' is a folder, not a CSV file. Pass the path of a .csv file.")
        return f"'{path.name}'", path.read_bytes()
    if hasattr(source, "read"):
        data = source.read()
        name = getattr(source, "name", None)
        label = f"'{Path(str(name)).name}'" if isinstance(name, (str, os.PathLike)) else "The file"
        if isinstance(data, str):
            return label, data
        if isinstance(data, (bytes, bytearray, memoryview)):
            return label, bytes(data)
        raise DataError(f"Reading the file gave {type(data).__name__}, not text or bytes. Pass a path, "
                        f"bytes or a file opened in binary mode.")
    raise DataError(f"load_csv expects a file path, bytes or an open file; got {type(source).__name__}. "
                    f"For a DataFrame you already have, skip load_csv and pass it directly.")


def _unzip_single_csv(name: str, raw: bytes) -> bytes:
    """The bytes of the one CSV inside a zip archive; DataError for workbooks and other archives."""
    excel = DataError(f"{name} is an Excel workbook (.xlsx) or a zip archive, not a CSV text file. "
                      f"Save it as CSV from Excel, or read it with pandas.read_excel(...) and pass "
                      f"the DataFrame.")
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            names = [m.filename for m in members]
            if any(n.startswith("xl/") for n in names) or "[Content_Types].xml" in names:
                raise DataError(f"{name} is an Excel workbook (.xlsx), not a CSV text file. "
                                f"Save it as CSV from Excel (File > Save As > CSV), or read it with "
                                f"pandas.read_excel(...) and pass the DataFrame.")
            texts = [m for m in members if m.filename.lower().endswith((".csv", ".txt", ".tsv"))
                     and not m.filename.startswith("__MACOSX/")]
            if len(texts) != 1:
                raise DataError(f"{name} is a zip archive holding {_plural(len(names), 'file')} "
                                f"({_quote_list(names, 5)}), not a CSV text file. Unzip it and choose "
                                f"the CSV file inside.")
            return archive.read(texts[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError, EOFError):
        raise excel from None


def _decode(name: str, raw: bytes, encoding: str | None) -> str:
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{name} looks gzip-compressed but cannot be decompressed ({exc}). "
                            f"Re-download it or unpack it first.") from None
    if not raw.strip():
        raise DataError(f"{name} is empty. Choose a CSV file with a header line and rows of data.")
    if raw.startswith(_EXCEL_XLSX):
        raw = _unzip_single_csv(name, raw)
    if raw.startswith(_EXCEL_XLS):
        raise DataError(f"{name} is an old Excel workbook (.xls), not a CSV text file. Save it as "
                        f"CSV from Excel, or read it with pandas.read_excel(...) and pass the DataFrame.")
    for magic, what in _SIGNATURES:
        if raw.startswith(magic):
            raise DataError(f"{name} is {what}, not a CSV text file. Choose a CSV file, i.e. text "
                            f"with one row per line.")
    utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    if not utf16 and b"\x00" in raw[:8192]:
        raise DataError(f"{name} is not a text file (it holds binary data). Choose a CSV file, "
                        f"i.e. text with one row per line.")
    if encoding is not None:
        try:
            text = raw.decode(encoding)
        except LookupError:
            raise DataError(f"Unknown encoding={encoding!r} for {name}. Try 'utf-8' or 'latin-1', or "
                            f"leave encoding=None to detect it.") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{name} cannot be decoded as {encoding} (byte {exc.start}). Try "
                            f"encoding='latin-1', or leave encoding=None to detect it.") from None
    elif utf16:
        text = raw.decode("utf-16")
    else:
        for enc in ("utf-8-sig", "cp1252", "latin-1"):
            try:
                text = raw.decode(enc)
                break
            except UnicodeDecodeError:
                continue
    text = text.lstrip("\ufeff")
    head = text[:8192]
    control = sum(1 for ch in head if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    if head and control > 0.01 * len(head):
        raise DataError(f"{name} is not a text file (it holds binary data). Choose a CSV file, "
                        f"i.e. text with one row per line.")
    return text


def _head_lines(text: str, n: int = 200) -> list[str]:
    chunk = text[:500_000]
    lines = chunk.splitlines()
    if len(chunk) < len(text) and lines:
        lines = lines[:-1]  # possibly cut in the middle
    return [ln for ln in lines if ln.strip()][:n]


def _sniff_sep(lines: list[str], decimal: str | None) -> str:
    sample = [re.sub(r'"[^"]*"', "", ln) for ln in lines[:50]]
    best, best_key = ",", None
    for sep in _SEPARATORS:
        if sep == decimal:
            continue
        counts = [ln.count(sep) for ln in sample]
        if not counts or counts[0] == 0:
            continue
        agree = sum(c == counts[0] for c in counts) / len(counts)
        key = (agree >= 0.9, agree, counts[0])
        if best_key is None or key > best_key:
            best, best_key = sep, key
    return best


def _sniff_decimal(lines: list[str], sep: str) -> str:
    if sep == ",":
        return "."
    comma = dot = 0
    for ln in lines[1:]:
        for tok in ln.split(sep):
            tok = tok.strip().strip('"')
            if _COMMA_TOKEN.match(tok):
                comma += 1
            elif _DOT_TOKEN.match(tok):
                dot += 1
    return "," if comma > dot else "."


def load_csv(source: Any, *, sep: str | None = None, decimal: str | None = None,
             encoding: str | None = None, time_column: str | None = "auto",
             missing_values: Sequence[float] = (), **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a CSV robustly into a DataFrame indexed by time (when a time column is found).

    source: a path (str / Path), bytes, or an open file. ``sep`` is sniffed among ``,`` ``;``
    tab and ``|``; decimal commas are detected; UTF-8 (with or without BOM), UTF-16 with BOM,
    Windows-1252 / Latin-1, gzip and a zip archive holding one CSV are read. Fully empty rows and
    all-empty ``Unnamed: N`` columns are dropped; a first line of numbers (no header) is read as
    data, with columns named ``column_1``, ``column_2``... ``time_column``: ``"auto"`` (a
    date/time column, a date column plus a time-of-day column, combined, or a numeric column
    named like a time holding Unix times), a column name, or ``None`` (keep the row order).
    Sentinels in ``missing_values`` become NaN. Numeric columns come back as float64; text
    columns of numbers with decimal commas or thousands separators are converted; other text
    columns are kept as they are. The rows are sorted by time (stable; duplicate timestamps are
    kept). Extra keyword arguments go to :func:`pandas.read_csv`.

    Every refusal is a :class:`~msda_widgets.errors.DataError` that names the file: empty or
    header-only files, Excel workbooks, PDFs, images and other binary files, web pages and JSON
    saved as .csv, rows with more fields than the header, unreadable timestamps and timestamps
    that mix time-zone-aware and naive values (tests/data/bad/ holds one file of each).
    """
    name, raw = _read_source(source)
    text = raw if isinstance(raw, str) else _decode(name, raw, encoding)
    if not text.strip():
        raise DataError(f"{name} is empty. Choose a CSV file with a header line and rows of data.")
    _refuse_markup(name, text)
    lines = _head_lines(text)
    if sep is None:
        sep = _sniff_sep(lines, decimal)
    if decimal is None:
        decimal = _sniff_decimal(lines, sep)
    kwargs: dict[str, Any] = dict(sep=sep, decimal=decimal, skipinitialspace=True, low_memory=False,
                                  na_values=_READ_NA)
    extra_na = read_csv_kwargs.pop("na_values", None)
    if isinstance(extra_na, Mapping):
        kwargs["na_values"] = extra_na
    elif extra_na is not None:
        kwargs["na_values"] = _READ_NA + ([extra_na] if isinstance(extra_na, str) else list(extra_na))
    kwargs.update(read_csv_kwargs)
    try:
        df = pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty. Choose a CSV file with a header line and rows of data.") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip()
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", detail)
        if ragged:
            detail = (f"line {ragged[2]} has {ragged[3]} fields but the lines before it have "
                      f"{ragged[1]}")
        raise DataError(f"{name} cannot be split into columns: {detail}. Check the separator "
                        f"(detected {sep!r}; pass sep=... to force one) and that every row has as many "
                        f"fields as the header.") from None
    except (ValueError, OverflowError) as exc:  # e.g. an unusable option passed to pandas.read_csv
        raise DataError(f"{name} cannot be read as CSV: {exc}. Check the file and the options passed "
                        f"to load_csv.") from None
    header_lines = 1
    if "header" not in read_csv_kwargs and "names" not in read_csv_kwargs and _header_is_data(df):
        # the first line holds values, not names: read it as data and number the columns
        names = [f"column_{k + 1}" for k in range(df.shape[1])]
        df = pd.read_csv(io.StringIO(text), **{**kwargs, "header": None, "names": names})
        header_lines = 0
    try:
        return _tidy_loaded(df, name, time_column, missing_values, decimal, header_lines)
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if msg.startswith(name) else f"{name}: {msg}") from None


def _refuse_markup(name: str, text: str) -> None:
    """DataError for a web page, an XML document or JSON saved under a .csv name."""
    head = text[:2000].lstrip().lower()
    if head.startswith("<!doctype html") or head.startswith("<html") or "<html" in head[:300]:
        raise DataError(f"{name} is a web page (HTML), not a CSV file: the download probably returned a "
                        f"sign-in or error page. Download the CSV file again and check that it opens "
                        f"as a table.")
    if head.startswith("<?xml"):
        raise DataError(f"{name} is an XML document, not a CSV file. Export the data as CSV (or read it "
                        f"with pandas.read_xml(...) and pass the DataFrame).")
    tail = text[-2000:].rstrip()
    if head[:1] in "[{" and head[:1] and tail[-1:] in "]}" and tail[-1:]:
        raise DataError(f"{name} holds JSON, not CSV. Read it with pandas.read_json(...) and pass the "
                        f"DataFrame, or export the data as CSV.")


def _header_is_data(df: pd.DataFrame) -> bool:
    """True when the first line is a row of values, not names (a file without a header line).

    That is when every column name is a number or a date, except for names that are all integers
    (years ``2019,2020,2021``, sensor tags ``101,102,103``, column numbers ``0,1,2``): those stay
    names unless the rows below are integers too, each name lies within its column's values (give
    or take one typical step between rows) and the names do not count up by one. A wrong "no
    header" call would turn names into data, so doubtful cases keep the header.
    """
    cols = [str(c).strip() for c in df.columns]
    if not cols or any(c.startswith("Unnamed:") or not c for c in cols):
        return False
    numbers = pd.to_numeric(pd.Series(cols).str.replace(",", ".", regex=False), errors="coerce")
    as_number = numbers.notna()
    if not as_number.any():
        return False
    rest = [c for c, ok in zip(cols, as_number) if not ok]
    if not rest:
        if not all(re.fullmatch(r"[+-]?\d+", c) for c in cols):
            return True  # decimals (0.0,10.51,21.16): values, never names
        return _integer_line_is_data(df, numbers.to_numpy(dtype=np.float64))
    if any(len(c) < 6 or not re.search(r"\d", c) for c in rest):
        return False
    return bool(_to_datetime(rest, format="mixed").notna().all())


def _integer_line_is_data(df: pd.DataFrame, head: np.ndarray) -> bool:
    """For a first line of integers: True only when the rows below look just like it (see
    :func:`_header_is_data`)."""
    if len(head) > 1 and np.all(np.diff(head) == 1):
        return False  # 0,1,2 / 1,2,3 / 2019,2020,2021 / 101,102,103: numbered columns or tags
    if len(df) == 0:
        return False
    for j, top in enumerate(head):
        s = df.iloc[:, j]
        if not _is_number(s) or ptypes.is_bool_dtype(s.dtype):
            return False
        v = _column_floats(s)
        v = v[np.isfinite(v)]
        if not v.size or not np.all(v == np.round(v)):
            return False
        step = float(np.median(np.abs(np.diff(v)))) if v.size > 1 else 0.0
        if not (v.min() - step <= top <= v.max() + step):
            return False
    return True


def _tidy_loaded(df: pd.DataFrame, name: str, time_column: str | None,
                 missing_values: Sequence[float], decimal: str | None = None,
                 header_lines: int = 1) -> pd.DataFrame:
    if df.shape[1] == 0:
        raise DataError(f"{name} has no columns. Choose a CSV file with a header line and rows of data.")
    if len(df) == 0:
        raise DataError(f"{name} has a header but no data rows. Choose a file with at least a few rows "
                        f"of measurements.")
    cols = [c.strip() if isinstance(c, str) else c for c in df.columns]
    if len(set(map(str, cols))) == len(cols):
        df.columns = cols
    empty_col = df.isna().all(axis=0).to_numpy()
    unnamed = np.array([str(c).startswith("Unnamed:") or str(c) == "" for c in df.columns])
    if (empty_col & unnamed).any():
        df = df.loc[:, ~(empty_col & unnamed)]
    keep = ~df.isna().all(axis=1).to_numpy()
    if not keep.any():
        raise DataError(f"{name} has a header but no data rows (every row is empty). Choose a file with "
                        f"at least a few rows of measurements.")
    rows = np.flatnonzero(keep)
    if not keep.all():
        df = df.iloc[rows]
    first = df.columns[0]
    if str(first) == "Unnamed: 0" and df.shape[1] > 1 and _is_number(df[first]):
        v = _column_floats(df[first])
        if np.array_equal(v, rows) or np.array_equal(v, rows + 1) or np.array_equal(v, np.arange(len(v))):
            df = df.iloc[:, 1:]  # a saved RangeIndex (DataFrame.to_csv default), not a sensor

    def namer(pos: int) -> str:
        return f"row {rows[pos] + 1} (line {rows[pos] + 1 + header_lines} of the file)"

    time = _resolve_time(df, time_column, namer)
    used = set(time.columns) if time is not None else set()
    sentinels = np.asarray(tuple(float(v) for v in missing_values), dtype=np.float64)
    out: dict[Any, Any] = {}
    for j, col in enumerate(df.columns):
        if j in used:
            continue
        s = df.iloc[:, j]
        if _is_number(s) and not ptypes.is_bool_dtype(s.dtype):
            values = _column_floats(s)
        elif _is_text(s):
            values, bad = _text_to_float(s, decimal)
            if bad.any() or np.isnan(values).all():
                out[col] = s.to_numpy()
                continue
        else:
            out[col] = s.to_numpy()
            continue
        if sentinels.size:
            hit = np.isin(values, sentinels)
            if hit.any():
                values = np.where(hit, np.nan, values)
        out[col] = values
    result = pd.DataFrame(out, columns=[c for j, c in enumerate(df.columns) if j not in used])
    if time is None:
        return result
    index = time.values.rename(time.name)
    i8 = index.asi8
    if len(i8) > 1 and not bool(np.all(i8[1:] >= i8[:-1])):
        order = np.argsort(i8, kind="stable")
        result, index = result.iloc[order], index[order]
    result.index = index
    return result


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
