"""Tests of msda_widgets.engine.data: load_csv, DataPipeline, Scaler, make_windows."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msda_widgets.config import DataConfig
from msda_widgets.engine.data import (
    CLIP,
    DataPipeline,
    DataReport,
    Scaler,
    SensorData,
    load_csv,
    make_windows,
)
from msda_widgets.errors import ConfigError, DataError, ModelFileError, NotFittedError


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def shared_data() -> Path:
    env = os.environ.get("MSDA_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"


def shared_file(rel: str) -> Path:
    path = shared_data() / rel
    if not path.is_file():
        pytest.skip(f"shared data file {rel} is not available here")
    return path


def pipe(**kw) -> DataPipeline:
    return DataPipeline(DataConfig(**kw))


def prepared(df: pd.DataFrame, **kw) -> SensorData:
    return pipe(**kw).fit_prepare(df)


def csv_bytes(text: str, encoding: str = "utf-8") -> bytes:
    return text.encode(encoding)


def naive_windows(values: np.ndarray, L: int, task: str):
    T = len(values)
    if task == "forecast":
        xs = [values[i:i + L] for i in range(T - L)]
        ys = [values[i + L] for i in range(T - L)]
        judged = [i + L for i in range(T - L)]
    else:
        xs = [values[i:i + L] for i in range(T - L + 1)]
        ys = xs
        judged = [i + L - 1 for i in range(T - L + 1)]
    return np.array(xs), np.array(ys), np.array(judged)


# ---------------------------------------------------------------------------------------------
# make_windows
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["forecast", "reconstruct"])
@pytest.mark.parametrize("L", [1, 3, 7])
def test_make_windows_matches_loop_and_is_a_view(task, L):
    values = np.arange(20 * 3, dtype=np.float64).reshape(20, 3) ** 1.5
    w = make_windows(values, L, task)
    xs, ys, judged = naive_windows(values, L, task)
    assert w.task == task
    assert w.inputs.shape == xs.shape == (len(judged), L, 3)
    np.testing.assert_array_equal(w.inputs, xs)
    np.testing.assert_array_equal(w.targets, ys)
    np.testing.assert_array_equal(w.judged, judged)
    assert w.judged.dtype == np.int64
    assert np.shares_memory(w.inputs, values)
    assert not w.inputs.flags.writeable
    if task == "reconstruct":
        assert w.targets is w.inputs
    else:
        assert np.shares_memory(w.targets, values)
        # each target is the row right after its window, and judged names that row
        np.testing.assert_array_equal(values[w.judged], w.targets)


def test_make_windows_judged_indices():
    v = np.zeros((10, 2))
    np.testing.assert_array_equal(make_windows(v, 4, "forecast").judged, [4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(make_windows(v, 4, "reconstruct").judged, [3, 4, 5, 6, 7, 8, 9])


def test_make_windows_too_short():
    with pytest.raises(DataError, match=r"needs at least 6 rows; got 5"):
        make_windows(np.zeros((5, 2)), 5, "forecast")
    with pytest.raises(DataError, match=r"needs at least 5 rows; got 4"):
        make_windows(np.zeros((4, 2)), 5, "reconstruct")
    assert make_windows(np.zeros((5, 2)), 5, "reconstruct").inputs.shape == (1, 5, 2)
    with pytest.raises(ConfigError, match="task"):
        make_windows(np.zeros((9, 2)), 3, "classify")


# ---------------------------------------------------------------------------------------------
# Scaler
# ---------------------------------------------------------------------------------------------

def test_minmax_scaler_fit_on_part_transform_other():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(100, 3)) * [1, 10, 100] + [0, 5, -50]
    train, test = data[:60], data[60:]
    s = Scaler("minmax").fit(train)
    z = s.transform(train)
    assert z.dtype == np.float32 and z.flags.c_contiguous
    assert z.min() >= 0 and z.max() <= 1
    np.testing.assert_allclose(z.min(axis=0), 0, atol=1e-7)
    np.testing.assert_allclose(z.max(axis=0), 1, atol=1e-6)
    zt = s.transform(test)
    expected = (test - train.min(axis=0)) / (train.max(axis=0) - train.min(axis=0))
    np.testing.assert_allclose(zt, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.inverse_transform(zt), test, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(s.inverse_transform(s.transform(test).astype(np.float64)), test, atol=1e-4)


def test_standard_scaler_and_constant_sensor():
    data = np.column_stack([np.arange(10.0), np.full(10, 3.0)])
    s = Scaler("standard").fit(data)
    z = s.transform(data)
    np.testing.assert_allclose(z[:, 0].mean(), 0, atol=1e-6)
    np.testing.assert_allclose(z[:, 0].std(), 1, atol=1e-6)
    assert s.scale_[1] == 1.0 and np.all(z[:, 1] == 0)
    assert Scaler("minmax").fit(data).scale_[1] == 1.0


def test_scaler_clips_and_rejects_bad_input():
    s = Scaler().fit(np.array([[0.0], [1e-3]]))
    z = s.transform(np.array([[1e300], [-1e300]]))
    assert z.dtype == np.float32 and np.all(np.isfinite(z))
    assert z[0, 0] == CLIP and z[1, 0] == -CLIP
    with pytest.raises(DataError, match="missing or infinite"):
        Scaler().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(DataError, match="Expected 1 sensors"):
        s.transform(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        Scaler().transform(np.zeros((2, 1)))
    with pytest.raises(ConfigError):
        Scaler("robust")


def test_scaler_state_round_trip():
    data = np.random.default_rng(2).normal(size=(30, 4))
    s = Scaler("standard").fit(data)
    state = s.to_state()
    assert set(state) == {"kind", "offset", "scale"}
    s2 = Scaler.from_state(state)
    assert s2.kind == "standard"
    np.testing.assert_array_equal(s2.transform(data), s.transform(data))
    with pytest.raises(ModelFileError):
        Scaler.from_state({"kind": "minmax", "offset": [0.0, 1.0], "scale": [1.0]})


# ---------------------------------------------------------------------------------------------
# load_csv
# ---------------------------------------------------------------------------------------------

def test_load_csv_semicolon_decimal_comma():
    text = "time;a;b;note\n2020-01-01 00:00;1,5;-2,25;x\n2020-01-01 00:01;3,0;4;y\n"
    df = load_csv(csv_bytes(text))
    assert list(df.columns) == ["a", "b", "note"]
    assert df.index.name == "time" and isinstance(df.index, pd.DatetimeIndex)
    assert df["a"].dtype == np.float64 and df["b"].dtype == np.float64
    np.testing.assert_array_equal(df["a"], [1.5, 3.0])
    np.testing.assert_array_equal(df["b"], [-2.25, 4.0])
    assert df["note"].tolist() == ["x", "y"]


def test_load_csv_tab_separated_and_quoted_decimal_comma(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("date\tv\n2021-05-01\t1.5\n2021-05-02\t2.5\n")
    df = load_csv(path)
    assert df.index[1] == pd.Timestamp("2021-05-02")
    np.testing.assert_array_equal(df["v"], [1.5, 2.5])
    df2 = load_csv(csv_bytes('date,v\n2021-05-01,"1,5"\n2021-05-02,"2,75"\n'))
    np.testing.assert_array_equal(df2["v"], [1.5, 2.75])


def test_load_csv_bom_latin1_crlf(tmp_path):
    bom = b"\xef\xbb\xbf" + b"timestamp,temp\r\n2020-01-01,1\r\n2020-01-02,2\r\n"
    df = load_csv(bom)
    assert df.index.name == "timestamp" and list(df.columns) == ["temp"]
    np.testing.assert_array_equal(df["temp"], [1.0, 2.0])
    latin = "date;Température;Débit\n2020-01-01;1,5;2\n2020-01-02;2,5;3\n".encode("latin-1")
    path = tmp_path / "latin.csv"
    path.write_bytes(latin)
    df = load_csv(str(path))
    assert list(df.columns) == ["Température", "Débit"]
    np.testing.assert_array_equal(df["Température"], [1.5, 2.5])
    # file-like objects work too
    assert load_csv(io.BytesIO(latin)).shape == (2, 2)


def test_load_csv_other_encodings_gzip_and_saved_index():
    text = "date;Temp °C;Cost €\n2020-01-01;1,5;2\n2020-01-02;2,5;3\n"
    df = load_csv(text.encode("cp1252"))
    assert list(df.columns) == ["Temp °C", "Cost €"]
    df = load_csv(text.encode("utf-16"))
    assert list(df.columns) == ["Temp °C", "Cost €"]
    np.testing.assert_array_equal(df["Temp °C"], [1.5, 2.5])
    df = load_csv(gzip.compress(text.encode("utf-8")))
    assert df.shape == (2, 2)
    saved = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 7.0]}).to_csv()  # writes the RangeIndex
    df = load_csv(saved.encode())
    assert list(df.columns) == ["a", "b"] and isinstance(df.index, pd.RangeIndex)


def test_load_csv_empty_trailing_rows_columns_and_sentinels():
    text = ("Date,Time,A,B,,\r\n"
            "3/10/2004,18.00.00,1,-200,,\r\n"
            "3/10/2004,19.00.00,2,5,,\r\n"
            "3/11/2004,00.00.00,-200,6,,\r\n"
            ",,,,,\r\n,,,,,\r\n")
    df = load_csv(csv_bytes(text), missing_values=[-200])
    assert list(df.columns) == ["A", "B"]
    assert len(df) == 3
    assert list(df.index) == [pd.Timestamp("2004-03-10 18:00"), pd.Timestamp("2004-03-10 19:00"),
                              pd.Timestamp("2004-03-11 00:00")]
    assert df.index.name == "Date Time"
    np.testing.assert_array_equal(df["A"], [1, 2, np.nan])
    np.testing.assert_array_equal(df["B"], [np.nan, 5, 6])


def test_load_csv_sorts_stably_and_keeps_duplicates():
    text = "t,v\n2020-01-03,3\n2020-01-01,1\n2020-01-03,4\n2020-01-02,2\n"
    df = load_csv(csv_bytes(text))
    assert df["v"].tolist() == [1, 2, 3, 4]
    assert df.index.is_monotonic_increasing and df.index.has_duplicates


def test_load_csv_time_column_none_keeps_row_order():
    df = load_csv(csv_bytes("t,v\n2020-01-03,3\n2020-01-01,1\n"), time_column=None)
    assert isinstance(df.index, pd.RangeIndex)
    assert df["t"].tolist() == ["2020-01-03", "2020-01-01"]


@pytest.mark.parametrize("content, pattern", [
    (b"", r"is empty"),
    (b"   \n\n", r"is empty"),
    (b"time,a,b\n", r"header but no data rows"),
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 50, r"Excel workbook \(\.xlsx\).*read_excel"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50, r"old Excel workbook \(\.xls\)"),
    (bytes(range(256)) * 8, r"not a text file"),
])
def test_load_csv_refuses_unusable_files(content, pattern):
    with pytest.raises(DataError, match=pattern):
        load_csv(content)


def test_load_csv_names_file_in_errors(tmp_path):
    path = tmp_path / "book.csv"
    path.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match=r"'book\.csv' is an Excel workbook"):
        load_csv(path)
    with pytest.raises(DataError, match=r"File not found"):
        load_csv(tmp_path / "nope.csv")


def test_load_csv_unparseable_timestamp_names_row():
    text = "timestamp,a\n2020-01-01,1\n2020-01-02,2\nyesterday,3\n2020-01-04,4\n"
    with pytest.raises(DataError, match=r"'timestamp'.*'yesterday'.*row 3 \(line 4 of the file\).*time_column=None"):
        load_csv(csv_bytes(text))


# ---------------------------------------------------------------------------------------------
# DataPipeline: time axis, sorting, duplicates
# ---------------------------------------------------------------------------------------------

def frame(times, **cols) -> pd.DataFrame:
    return pd.DataFrame({"time": times, **cols})


def test_unsorted_rows_are_sorted_with_positions():
    df = frame(["2020-01-03", "2020-01-01", "2020-01-04", "2020-01-02"], a=[3.0, 1.0, 4.0, 2.0],
               b=[30.0, 10.0, 40.0, 20.0])
    before = df.copy()
    sd = prepared(df)
    pd.testing.assert_frame_equal(df, before)
    assert list(sd.index) == list(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04"]))
    assert sd.index.name == "time"
    np.testing.assert_array_equal(sd.values[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(sd.positions, [2, 0, 3, 1])
    assert sd.positions.dtype == np.int64
    np.testing.assert_array_equal(sd.values[sd.positions, 0], df["a"].to_numpy())
    assert sd.report.was_sorted is False and sd.report.time_column == "time"
    assert "Sorted 4 rows by time." in sd.report.messages()
    assert prepared(df.iloc[[1, 3, 0, 2]]).report.was_sorted is True


DUP = dict(times=["2020-01-02", "2020-01-01", "2020-01-02", "2020-01-03", "2020-01-01"],
           a=[2.0, 1.0, 4.0, 5.0, np.nan])


@pytest.mark.parametrize("mode, expected", [
    ("mean", [1.0, 3.0, 5.0]),
    ("first", [1.0, 2.0, 5.0]),
    ("last", [np.nan, 4.0, 5.0]),  # last row of 2020-01-01 is missing -> imputed below
])
def test_duplicate_timestamps(mode, expected):
    df = frame(DUP["times"], a=DUP["a"], b=[1.0, 2.0, 3.0, 4.0, 6.0])
    sd = prepared(df, duplicates=mode, impute="bfill")
    assert sd.report.n_rows_in == 5 and sd.report.n_rows == 3
    assert sd.report.duplicate_timestamps == 2
    assert sd.index.is_unique and sd.index.is_monotonic_increasing
    np.testing.assert_array_equal(sd.positions, [1, 0, 1, 2, 0])
    exp = np.array(expected)
    want = pd.Series(exp).bfill().ffill().to_numpy()
    np.testing.assert_array_equal(sd.values[:, 0], want)
    np.testing.assert_array_equal(sd.missing[:, 0], np.isnan(exp))
    assert f"Merged 2 duplicate timestamps ({mode})." in sd.report.messages()


def test_duplicate_timestamps_mean_per_column():
    df = frame(DUP["times"], a=DUP["a"], b=[1.0, 2.0, 3.0, 4.0, 6.0])
    sd = prepared(df, duplicates="mean")
    np.testing.assert_array_equal(sd.values[:, 1], [4.0, 2.0, 4.0])  # (2+6)/2, (1+3)/2, 4


def test_duplicate_timestamps_error():
    df = frame(DUP["times"], a=DUP["a"])
    with pytest.raises(DataError, match=r"Timestamp 2020-01-02 00:00:00 appears more than once \(row 1 and row 3\).*duplicates="):
        prepared(df, duplicates="error")


def test_datetime_index_wins_and_range_index_without_time():
    idx = pd.date_range("2021-01-01", periods=4, freq="h", name="when")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 5.0]}, index=idx)
    sd = prepared(df)
    assert sd.report.time_column == "when"
    assert sd.index.equals(idx)
    sd = prepared(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0]}))
    assert sd.report.time_column is None
    assert isinstance(sd.index, pd.RangeIndex) and len(sd.index) == 3
    assert "No time column: row order is the time axis." in sd.report.messages()
    sd = prepared(frame(["2020-01-02", "2020-01-01"], a=[1.0, 2.0]), time_column=None)
    assert isinstance(sd.index, pd.RangeIndex) and sd.report.ignored_columns == ("time",)


def test_time_found_by_values_and_datetime_dtype():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "recorded": ["2020-01-01 10:00", "2020-01-01 11:00",
                                                          "2020-01-01 12:00"]})
    assert prepared(df).report.time_column == "recorded"
    df = pd.DataFrame({"stamp_col": pd.date_range("2020", periods=3), "a": [1.0, 2.0, 4.0]})
    assert prepared(df).report.time_column == "stamp_col"


def test_date_and_time_of_day_columns_are_combined():
    df = pd.DataFrame({"Date": ["3/10/2004", "3/10/2004", "3/11/2004"],
                       "Time": ["18.00.00", "19.00.00", "00.00.00"], "x": [1.0, 2.0, 3.0]})
    sd = prepared(df)
    assert sd.report.time_column == "Date Time"
    assert sd.index[0] == pd.Timestamp("2004-03-10 18:00:00")
    assert sd.index[2] == pd.Timestamp("2004-03-11 00:00:00")
    assert sd.sensors == ("x",) and sd.report.ignored_columns == ()


def test_day_first_dates_are_recognised():
    df = pd.DataFrame({"date": ["12/10/2004", "13/10/2004", "14/10/2004"], "a": [1.0, 2.0, 4.0]})
    sd = prepared(df)
    assert list(sd.index) == list(pd.to_datetime(["2004-10-12", "2004-10-13", "2004-10-14"]))


def test_named_time_column_and_errors():
    df = pd.DataFrame({"t1": ["2020-01-02", "2020-01-01", "2020-01-03"], "a": [1.0, 2.0, 3.0]})
    sd = prepared(df, time_column="t1")
    np.testing.assert_array_equal(sd.values[:, 0], [2, 1, 3])
    with pytest.raises(DataError, match=r"time_column='nope' is not a column.*'t1', 'a'"):
        prepared(df, time_column="nope")


def test_unparseable_and_missing_timestamps():
    df = pd.DataFrame({"timestamp": ["2020-01-01", "2020-01-02", "not a date", "2020-01-04"],
                       "a": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError, match=r"'timestamp'.*'not a date' in row 3.*time_column=None"):
        prepared(df)
    df = pd.DataFrame({"timestamp": ["2020-01-01", None, "2020-01-03"], "a": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError, match=r"'timestamp' has no timestamp in row 2"):
        prepared(df)


def test_mixed_time_zones_become_utc():
    df = pd.DataFrame({"time": ["2020-03-29 01:00:00+01:00", "2020-03-29 03:00:00+02:00",
                                "2020-03-29 04:00:00+02:00"], "a": [1.0, 2.0, 3.0]})
    sd = prepared(df)
    assert str(sd.index.tz) == "UTC"
    assert list(sd.index) == list(pd.to_datetime(["2020-03-29 00:00", "2020-03-29 01:00",
                                                  "2020-03-29 02:00"]).tz_localize("UTC"))
    stamps = [pd.Timestamp("2020-01-01 00:00", tz="Europe/Paris"), pd.Timestamp("2020-01-01 00:00", tz="UTC"),
              pd.Timestamp("2020-01-01 00:00", tz="US/Eastern")]
    df = pd.DataFrame({"when": pd.Series(stamps, dtype=object), "a": [1.0, 2.0, 3.0]})
    sd = prepared(df)
    assert str(sd.index.tz) == "UTC"
    assert list(sd.index) == list(pd.to_datetime(["2019-12-31 23:00", "2020-01-01 00:00",
                                                  "2020-01-01 05:00"]).tz_localize("UTC"))


# ---------------------------------------------------------------------------------------------
# DataPipeline: sensors, labels, sentinels, validation
# ---------------------------------------------------------------------------------------------

def test_label_and_text_columns_are_not_sensors():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "anomaly": [0.0, 1.0, 0.0], "Label": [0, 0, 1],
                       "site": ["x", "y", "z"], "b": [3.0, 1.0, 2.0]})
    sd = prepared(df)
    assert sd.sensors == ("a", "b")
    assert sd.report.label_columns == ("anomaly", "Label")
    assert sd.report.ignored_columns == ("anomaly", "Label", "site")
    sd = prepared(df, label_columns=["site"])
    assert sd.sensors == ("a", "anomaly", "Label", "b")


def test_explicit_sensors():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0], "c": [5.0, 6.0, 8.0], "s": ["x", "y", "z"]})
    sd = prepared(df, sensors=["c", "a"])
    assert sd.sensors == ("c", "a")
    np.testing.assert_array_equal(sd.values, df[["c", "a"]].to_numpy())
    with pytest.raises(DataError, match=r"'zz' not found. Available numeric columns: 'a', 'b', 'c'"):
        prepared(df, sensors=["a", "zz"])
    with pytest.raises(DataError, match=r"Sensor column 's' is not numeric. Available numeric columns: 'a', 'b', 'c'"):
        prepared(df, sensors=["s"])


def test_decimal_comma_text_and_na_markers_in_dataframe():
    df = pd.DataFrame({"a": ["1,5", "2,5", "NA", "n/a", "-", "", "null", "4,0"],
                       "b": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]})
    sd = prepared(df, impute="zero")
    assert sd.sensors == ("a", "b")
    np.testing.assert_array_equal(sd.values[:, 0], [1.5, 2.5, 0, 0, 0, 0, 0, 4.0])
    assert sd.report.n_missing == {"a": 5, "b": 0}


def test_mostly_numeric_column_with_text_is_refused():
    df = pd.DataFrame({"a": ["1", "2", "abc", "4", "12a"], "b": [1.0, 2.0, 3.0, 4.0, 5.0]})
    with pytest.raises(DataError, match=r"Column 'a' is mostly numbers but has text: 'abc' in row 3.*missing_values"):
        prepared(df)


def test_no_sensor_column():
    df = pd.DataFrame({"name": ["x", "y", "z"], "anomaly": [0, 1, 0]})
    with pytest.raises(DataError, match=r"No sensor column found. Columns seen: 'name' \(text\), 'anomaly' \(label\).*must be numeric"):
        prepared(df)


def test_sentinels_become_missing():
    df = pd.DataFrame({"a": [1.0, -200.0, 3.0, 4.0], "b": ["5", "-200", "7", "8"]})
    sd = prepared(df, missing_values=[-200])
    np.testing.assert_array_equal(sd.values, [[1, 5], [2, 6], [3, 7], [4, 8]])
    np.testing.assert_array_equal(sd.missing[:, 0], [False, True, False, False])
    assert sd.report.n_missing == {"a": 1, "b": 1}


def test_infinite_and_overflowing_values():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, np.inf, 2.0]})
    with pytest.raises(DataError, match=r"Column 'b' has an infinite value \(inf\) in row 2. Replace it or mark it missing"):
        prepared(df)
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "big": [-1.7e308, 1.7e308, 0.0]})
    with pytest.raises(DataError, match=r"Column 'big' has values too large"):
        prepared(df)


def test_constant_and_empty_columns_dropped_and_reported():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "k": [7.0, 7.0, np.nan, 7.0],
                       "e": [np.nan] * 4, "b": [4.0, 3.0, 2.0, 1.0]})
    sd = prepared(df)
    assert sd.sensors == ("a", "b")
    assert sd.report.dropped_constant == ("k",)
    assert sd.report.dropped_all_missing == ("e",)
    msgs = sd.report.messages()
    assert "Dropped constant column 'k'." in msgs
    assert "Dropped empty column 'e' (no values)." in msgs
    with pytest.raises(DataError, match=r"Column 'e' has no values.*drop_constant=True"):
        prepared(df, drop_constant=False)
    with pytest.raises(DataError, match=r"Column 'k' is constant \(every value is 7\).*drop_constant=True"):
        prepared(df[["a", "k"]], drop_constant=False)
    with pytest.raises(DataError, match=r"No usable sensor column is left.*constant: 'k'.*all missing: 'e'"):
        prepared(df[["k", "e"]])


def test_min_rows():
    df = frame(["2020-01-01", "2020-01-01", "2020-01-02"], a=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"needs at least 3 rows \(lookback \+ 2\); got 2"):
        pipe().fit_prepare(df, min_rows=3)
    assert pipe().fit_prepare(df, min_rows=2).values.shape == (2, 1)


def test_duplicate_column_names_refused():
    df = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], columns=["a", "a"])
    with pytest.raises(DataError, match=r"Column 'a' appears more than once"):
        prepared(df)


# ---------------------------------------------------------------------------------------------
# imputation
# ---------------------------------------------------------------------------------------------

TINY = pd.DataFrame({"a": [np.nan, 1.0, np.nan, np.nan, 4.0, np.nan],
                     "b": [2.0, np.nan, 6.0, 8.0, np.nan, 10.0]})


@pytest.mark.parametrize("mode", ["zero", "mean", "median", "ffill", "bfill", "interpolate"])
def test_impute_modes_match_pandas(mode):
    sd = prepared(TINY, impute=mode)
    if mode == "zero":
        expected = TINY.fillna(0.0)
    elif mode == "mean":
        expected = TINY.fillna(TINY.mean())
    elif mode == "median":
        expected = TINY.fillna(TINY.median())
    elif mode == "ffill":
        expected = TINY.ffill().bfill()
    elif mode == "bfill":
        expected = TINY.bfill().ffill()
    else:
        expected = TINY.interpolate(method="linear", limit_direction="both")
    np.testing.assert_allclose(sd.values, expected.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sd.missing, TINY.isna().to_numpy())
    assert sd.values.dtype == np.float64 and sd.values.flags.c_contiguous
    assert np.isfinite(sd.values).all()
    assert sd.report.n_missing == {"a": 4, "b": 2}
    assert f"Imputed 6 missing values ({mode})." in sd.report.messages()


def test_impute_exact_values():
    np.testing.assert_array_equal(prepared(TINY, impute="interpolate").values[:, 0], [1, 1, 2, 3, 4, 4])
    np.testing.assert_array_equal(prepared(TINY, impute="ffill").values[:, 0], [1, 1, 1, 1, 4, 4])
    np.testing.assert_array_equal(prepared(TINY, impute="bfill").values[:, 0], [1, 1, 4, 4, 4, 4])
    p = pipe(impute="mean")
    p.fit_prepare(TINY)
    np.testing.assert_array_equal(p.fill_values_, [2.5, 6.5])
    p = pipe(impute="median")
    p.fit_prepare(TINY)
    np.testing.assert_array_equal(p.fill_values_, [2.5, 7.0])
    p = pipe(impute="interpolate")
    p.fit_prepare(TINY)
    np.testing.assert_array_equal(p.fill_values_, [0.0, 0.0])


def test_prepare_uses_fit_statistics():
    p = pipe(impute="mean")
    p.fit_prepare(TINY)
    new = pd.DataFrame({"b": [np.nan, 100.0], "a": [50.0, np.nan], "extra": [1.0, 2.0]})
    sd = p.prepare(new)
    assert sd.sensors == ("a", "b")
    np.testing.assert_array_equal(sd.values, [[50.0, 6.5], [2.5, 100.0]])
    assert sd.report.ignored_columns == ("extra",)


# ---------------------------------------------------------------------------------------------
# fit/prepare contract, state, caller's frame
# ---------------------------------------------------------------------------------------------

def test_prepare_needs_fit_and_fitted_sensors():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [3.0, 1.0, 2.0]})
    p = pipe()
    with pytest.raises(NotFittedError):
        p.prepare(df)
    p.fit_prepare(df)
    with pytest.raises(DataError, match=r"Sensor column 'b' used in training is missing from this table"):
        p.prepare(df[["a"]])
    # constant columns are fine when preparing new data
    sd = p.prepare(pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}))
    assert sd.sensors == ("a", "b") and sd.report.dropped_constant == ()


def test_caller_dataframe_unchanged():
    df = pd.DataFrame({"time": ["2020-01-03", "2020-01-01", "2020-01-01", "2020-01-02"],
                       "a": ["1,5", "NA", "3", "-200"], "b": [1.0, np.nan, -200.0, 4.0],
                       "c": [5.0, 5.0, 5.0, 5.0], "anomaly": [0, 1, 0, 0]})
    before = df.copy()
    p = pipe(missing_values=[-200])
    p.fit_prepare(df)
    p.prepare(df)
    pd.testing.assert_frame_equal(df, before)


def test_state_round_trip():
    df = pd.DataFrame({"Date": ["3/10/2004", "3/10/2004", "3/11/2004", "3/11/2004"],
                       "Time": ["18.00.00", "19.00.00", "00.00.00", "01.00.00"],
                       "x": [1.0, np.nan, 3.0, 4.0], "y": [2.0, 2.5, np.nan, 1.0], "k": [1.0] * 4})
    p = pipe(impute="median", missing_values=[-200])
    sd = p.fit_prepare(df)
    state = p.to_state()

    def plain(v):
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or isinstance(v, (str, int, float, bool, np.ndarray))

    assert plain(state)
    q = DataPipeline.from_state(state)
    assert q.config == p.config and q.sensors_ == ("x", "y")
    np.testing.assert_array_equal(q.fill_values_, p.fill_values_)
    sd2 = q.prepare(df)
    np.testing.assert_array_equal(sd2.values, sd.values)
    assert sd2.index.equals(sd.index) and sd2.report.time_column == "Date Time"
    with pytest.raises(ModelFileError):
        DataPipeline.from_state({"format": "something else"})


def test_report_messages_and_fields():
    rep = DataReport(n_rows_in=10, n_rows=7, time_column="t", sensors=("a",), dropped_constant=("x",),
                     dropped_all_missing=(), ignored_columns=("anomaly",), label_columns=("anomaly",),
                     duplicate_timestamps=3, was_sorted=True, n_missing={"a": 412})
    assert rep.messages() == ["Merged 3 duplicate timestamps (mean).", "Dropped constant column 'x'.",
                              "Kept label column 'anomaly' out of the sensors.",
                              "Imputed 412 missing values (interpolate)."]


def test_prepare_parses_string_dates_of_a_large_frame():
    # speed is measured in benchmarks/bench_engine.py, not asserted here
    rng = np.random.default_rng(0)
    n = 29_221
    values = rng.normal(size=(n, 26))
    values[rng.random(values.shape) < 0.1] = np.nan
    df = pd.DataFrame(values, columns=[f"S{i}" for i in range(26)])
    df.insert(0, "LOCAL_DATE", pd.date_range("1940-01-01", periods=n).strftime("%d-%b-%Y %H:%M:%S"))
    sd = pipe().fit_prepare(df)
    assert sd.values.shape == (n, 26) and np.isfinite(sd.values).all()
    assert isinstance(sd.index, pd.DatetimeIndex) and sd.index[0] == pd.Timestamp("1940-01-01")
    assert sd.missing.sum() == np.isnan(values).sum()


# ---------------------------------------------------------------------------------------------
# real files beside the project
# ---------------------------------------------------------------------------------------------

@pytest.mark.shared_data
def test_real_canadian_climate():
    df = load_csv(shared_file("msda/Canadian_climate_history.csv"))
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "LOCAL_DATE"
    assert df.shape == (29_221, 26)
    assert df.index[0] == pd.Timestamp("1940-01-01")
    sd = pipe().fit_prepare(df)
    assert sd.values.shape == (29_221, 26) and np.isfinite(sd.values).all()
    assert sd.missing.sum() == int(df.isna().sum().sum()) > 0
    raw = pd.read_csv(shared_file("msda/Canadian_climate_history.csv"))
    sd2 = pipe().fit_prepare(raw)
    assert sd2.report.time_column == "LOCAL_DATE" and len(sd2.sensors) == 26
    np.testing.assert_array_equal(sd2.values, sd.values)


@pytest.mark.shared_data
def test_real_air_quality():
    df = load_csv(shared_file("msda/AirQualityUCI.csv"), missing_values=[-200])
    assert len(df) == 9_357
    assert df.index[0] == pd.Timestamp("2004-03-10 18:00")
    assert df.index.is_monotonic_increasing
    assert df.shape[1] == 13
    assert not (df == -200).any().any()
    sd = pipe().fit_prepare(df)
    assert len(sd.sensors) == 13 and sd.values.shape == (9_357, 13)
    assert sd.report.n_missing["NMHC(GT)"] > 8_000


@pytest.mark.shared_data
def test_real_skab_labels_are_not_sensors():
    df = load_csv(shared_file("skab/valve1/0.csv"))
    assert df.index.name == "datetime"
    sd = pipe().fit_prepare(df)
    assert len(sd.sensors) == 8
    assert "anomaly" not in sd.sensors and "changepoint" not in sd.sensors
    assert sd.report.label_columns == ("anomaly", "changepoint")


# ---------------------------------------------------------------------------------------------
# regressions: load_csv review (thousands, numeric headers, epoch names, zone mixes, line numbers)
# ---------------------------------------------------------------------------------------------

def test_regression_quoted_thousands_in_a_dot_decimal_file_are_not_decimal_commas():
    df = load_csv(io.BytesIO(b'date,count,temp\n2024-01-01,998,1.5\n2024-01-02,999,1.6\n'
                             b'2024-01-03,"1,000",1.7\n2024-01-04,"1,001",1.8\n'))
    assert df["count"].tolist() == [998.0, 999.0, 1000.0, 1001.0]
    # a column that shows a plain decimal comma keeps the decimal-comma reading (10,516 = 10.516)
    dec = load_csv(io.BytesIO(b'time,a\n2024-01-01,"10,5162"\n2024-01-02,"10,516"\n2024-01-03,"0,54"\n'))
    assert dec["a"].tolist() == [10.5162, 10.516, 0.54]
    # in a file whose decimal is ",", "1,000" stays one (today's behaviour)
    semi = load_csv(io.BytesIO(b"time;a\n2024-01-01;1,5\n2024-01-02;1,000\n2024-01-03;2,25\n"))
    assert semi["a"].tolist() == [1.5, 1.0, 2.25]


@pytest.mark.parametrize("header", [b"2019,2020,2021", b"101,102,103"])
def test_regression_all_integer_header_keeps_its_names(header):
    df = load_csv(io.BytesIO(header + b"\n1.5,2.5,3.5\n1.6,2.6,3.6\n1.7,2.7,3.7\n"))
    assert list(df.columns) == header.decode().split(",")
    assert len(df) == 3 and df.iloc[0].tolist() == [1.5, 2.5, 3.5]


def test_regression_integer_first_line_that_looks_like_the_rows_is_still_data():
    df = load_csv(io.BytesIO(b"10,20\n11,21\n12,22\n13,24\n"))
    assert list(df.columns) == ["column_1", "column_2"] and df["column_1"].tolist() == [10, 11, 12, 13]
    dec = load_csv(io.BytesIO(b"0.0,1\n2,3\n4,5\n"))  # a decimal point: values, not names
    assert list(dec.columns) == ["column_1", "column_2"] and len(dec) == 3


def test_regression_column_merely_containing_a_time_word_is_a_sensor():
    df = load_csv(io.BytesIO(b"run_time_ns,temp\n900000000,1.5\n950000000,1.6\n1200000000,1.7\n"))
    assert not isinstance(df.index, pd.DatetimeIndex)
    assert list(df.columns) == ["run_time_ns", "temp"]
    # a Unix-time column with the right name but out of order is not the time axis either
    shuffled = load_csv(io.BytesIO(b"timestamp,a\n1704070800,1\n1704067200,2\n1704074400,3\n"))
    assert "timestamp" in shuffled.columns and not isinstance(shuffled.index, pd.DatetimeIndex)
    # whole names (with a unit suffix) still work
    ok = load_csv(io.BytesIO(b"unixTime_s,a\n1704067200,1\n1704070800,2\n1704074400,3\n"))
    assert ok.index.name == "unixTime_s" and ok.index[0] == pd.Timestamp("2024-01-01")


def test_regression_naive_stamp_among_aware_leftovers_is_refused():
    text = (b"time,v\n2024-01-01T00:00:00+01:00,1\n2024-01-01T01:00:00+01:00,2\n"
            b"2024-01-01T02:00:00+01:00,2\n01/01/2024 03:00 +01:00,3\n2024-01-01 04:00,4\n")
    with pytest.raises(DataError, match=r"mixes timestamps with a time zone.*'2024-01-01 04:00' in row 5"):
        load_csv(io.BytesIO(text))
    # aware stamps in another layout are still read, in their zone
    ok = load_csv(io.BytesIO(text.replace(b"2024-01-01 04:00,", b"01/01/2024 04:00 +01:00,")))
    assert ok.index[-1] == pd.Timestamp("2024-01-01 04:00", tz="UTC+01:00")


def test_regression_headerless_file_errors_name_the_right_line():
    rows = [f"2024-01-01 {h:02d}:00,{h}.5" for h in range(12)]
    rows[2] = "yesterday,2.5"
    with pytest.raises(DataError, match=r"'yesterday' in row 3 \(line 3 of the file\)"):
        load_csv(io.BytesIO(("\n".join(rows) + "\n").encode()))
