"""Files in, DataFrames out: :func:`load_csv` and what reading a cell means.

* :func:`load_csv` reads a messy CSV (separator, decimal commas, BOM, Latin-1, UTF-16, CRLF,
  gzip, a zip holding one CSV, empty trailing rows/columns, a first line of values instead of
  names, split date + time-of-day columns, sentinels) into a DataFrame indexed by time.
* The cell readers shared with :class:`~msda_widgets.engine.data.DataPipeline`: text to
  numbers (:func:`_text_to_float`: NA markers, decimal commas, thousands separators) and the
  time axis (:func:`_resolve_time`: a DatetimeIndex, a date/time column, date + time-of-day,
  Unix times).

Only numpy and pandas are used here. Nothing is printed; every refusal is a
:class:`~msda_widgets.errors.DataError` naming the file, column or row and saying what to do.
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

from ..errors import DataError

__all__ = ["load_csv", "NA_MARKERS"]

#: Cell texts that mean "missing" (compared after stripping, case-insensitive).
NA_MARKERS = ("", "na", "n/a", "nan", "-nan", "null", "none", "nil", "-", "--", "?", "#n/a",
              "#na", "<na>", "missing")

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
