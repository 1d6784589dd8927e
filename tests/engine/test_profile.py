"""Sensor profiling (msda_widgets.engine.profile): every statistic checked against a
straightforward pandas computation (loops over windows, DataFrame.diff / corr / rolling) on
small tables with gaps in time and missing values."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from msda_widgets.engine.profile import (FEATURE_NAMES, MAX_DRIFT_WINDOWS, MIN_DRIFT_ROWS, SUMMARY_COLUMNS,
                                         SensorProfile, drift_window, features, profile_sensors)
from msda_widgets.errors import ConfigError, DataError


def _table(n: int = 60, seed: int = 0, nan: bool = True) -> pd.DataFrame:
    """Daily rows with one 3-day gap; a random walk, a rounded (often flat) sensor, a noisy sine
    and a text column that is not a sensor; a few missing values."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", periods=n + 2, freq="D")
    index = days.delete([20, 21])                      # row 20 comes 3 days after row 19
    df = pd.DataFrame({
        "walk": np.cumsum(rng.standard_normal(n)),
        "steps": np.round(np.cumsum(rng.standard_normal(n)) / 3),
        "sine": np.sin(np.arange(n) / 4) + 0.2 * rng.standard_normal(n),
        "note": ["x"] * n,
    }, index=index)
    if nan:
        df.iloc[[5, 6, 31], 0] = np.nan
        df.iloc[[40], 2] = np.nan
    return df


def _sensors(df: pd.DataFrame) -> pd.DataFrame:
    return df[["walk", "steps", "sine"]]


@pytest.fixture
def df() -> pd.DataFrame:
    return _table()


# ----------------------------------------------------------------------------------- per step

def test_change_rate_and_directions_match_pandas(df):
    prof = profile_sensors(df, window=10, threshold=0.5)
    x = _sensors(df)
    assert prof.sensors == ("walk", "steps", "sine")          # the text column is not a sensor
    diff = x.diff()
    pd.testing.assert_frame_equal(prof.change, diff, check_names=False)
    days = pd.Series(x.index, index=x.index).diff() / pd.Timedelta("1D")   # median spacing: a day
    assert prof.time_unit == pd.Timedelta("1D") and prof.rate_unit == "per day"
    pd.testing.assert_frame_equal(prof.rate, diff.div(days, axis=0), check_names=False)
    assert prof.rate.iloc[20, 1] == pytest.approx(diff.iloc[20, 1] / 3)   # the 3-day gap
    s = prof.summary
    assert tuple(s.columns) == SUMMARY_COLUMNS
    np.testing.assert_array_equal(s["increase"], (diff > 0).sum())
    np.testing.assert_array_equal(s["decrease"], (diff < 0).sum())
    np.testing.assert_array_equal(s["equal"], (diff == 0).sum())
    np.testing.assert_allclose(s["activity"], ((diff > 0) | (diff < 0)).sum() / diff.notna().sum())
    assert s.loc["steps", "equal"] > 5                       # the rounded sensor is often flat
    np.testing.assert_array_equal(s["n_values"], x.count())
    np.testing.assert_array_equal(s["n_missing"], x.isna().sum())
    for col, ref in (("mean", x.mean()), ("std", x.std()), ("min", x.min()), ("max", x.max())):
        np.testing.assert_allclose(s[col], ref, err_msg=col)
    rate = diff.div(days, axis=0)
    np.testing.assert_allclose(s["max_rate"], rate.abs().max())
    np.testing.assert_allclose(s["max_rate_scaled"], rate.abs().max() / x.std())
    scaled = rate.abs().max() / x.std()
    np.testing.assert_allclose(s["max_rate_relative"], scaled / scaled.median())


def test_growth_and_decay_use_the_threshold_in_step_standard_deviations(df):
    x = _sensors(df)
    diff = x.diff()
    for threshold in (0.0, 0.5, 1.5):
        prof = profile_sensors(df, window=10, threshold=threshold)
        limit = threshold * diff.std()
        np.testing.assert_array_equal(prof.summary["growth"], (diff > limit).sum())
        np.testing.assert_array_equal(prof.summary["decay"], (diff < -limit).sum())
    zero = profile_sensors(df, window=10, threshold=0)
    np.testing.assert_array_equal(zero.summary["growth"], zero.summary["increase"])
    np.testing.assert_array_equal(zero.summary["decay"], zero.summary["decrease"])


# ----------------------------------------------------------------------------------- windows

@pytest.mark.parametrize("window,step", [(10, None), (7, 1), (8, 3), (2, None)])
def test_window_statistics_match_a_loop_over_windows(df, window, step):
    threshold = 0.7
    prof = profile_sensors(df, window=window, step=step, threshold=threshold)
    x = _sensors(df)
    diff = x.diff()
    growth = diff > threshold * diff.std()
    decay = diff < -threshold * diff.std()
    ends = list(range(window - 1, len(x), step or window))
    assert prof.n_windows == len(ends) and prof.step == (step or window)
    rows = {name: [] for name in ("mean", "std", "count", "growth", "decay")}
    for e in ends:
        part = slice(e - window + 1, e + 1)
        rows["mean"].append(x.iloc[part].mean())
        rows["std"].append(x.iloc[part].std())
        rows["count"].append(x.iloc[part].count())
        rows["growth"].append(growth.iloc[part].sum())
        rows["decay"].append(decay.iloc[part].sum())
    ref = {k: pd.DataFrame(v, index=x.index[ends]) for k, v in rows.items()}
    for name, got in (("mean", prof.window_mean), ("std", prof.window_std), ("count", prof.window_count),
                      ("growth", prof.window_growth), ("decay", prof.window_decay)):
        pd.testing.assert_frame_equal(got, ref[name].astype(float), check_names=False, obj=name)
    elapsed = pd.Series(x.index[ends], index=x.index[ends]).diff() / pd.Timedelta("1D")
    pd.testing.assert_frame_equal(prof.window_mean_change, ref["mean"].diff(), check_names=False)
    pd.testing.assert_frame_equal(prof.window_std_change, ref["std"].diff(), check_names=False)
    pd.testing.assert_frame_equal(prof.window_mean_rate, ref["mean"].diff().div(elapsed, axis=0),
                                  check_names=False)
    pd.testing.assert_frame_equal(prof.window_std_rate, ref["std"].diff().div(elapsed, axis=0),
                                  check_names=False)
    np.testing.assert_allclose(prof.summary["mean_window_std"], ref["std"].mean())


def test_tumbling_growth_counts_add_up_to_the_totals(df):
    prof = profile_sensors(df.iloc[:50], window=10, threshold=0.3)   # 50 rows: 5 whole windows
    np.testing.assert_array_equal(prof.window_growth.sum(), prof.summary["growth"])
    np.testing.assert_array_equal(prof.window_decay.sum(), prof.summary["decay"])


def test_features_frame(df):
    prof = profile_sensors(df, window=10)
    f = prof.features()
    assert list(f.columns) == [f"{s}_{n}" for s in prof.sensors for n in FEATURE_NAMES]
    assert f.index.equals(prof.window_mean.index) and len(f) == prof.n_windows == 6
    pd.testing.assert_series_equal(f["walk_mean"], prof.window_mean["walk"], check_names=False)
    pd.testing.assert_series_equal(f["sine_std_rate"], prof.window_std_rate["sine"], check_names=False)
    pd.testing.assert_series_equal(f["steps_growth"], prof.window_growth["steps"], check_names=False)
    multi = prof.features(flat=False)
    assert multi.columns.nlevels == 2 and multi[("walk", "count")].tolist() == f["walk_count"].tolist()
    pd.testing.assert_frame_equal(features(df, window=10), f)
    f.iloc[0, 0] = 1e9                                       # a copy: the profile is unchanged
    assert prof.window_mean.iloc[0, 0] != 1e9


# ----------------------------------------------------------------------------------- between sensors

def test_correlation_agreement_and_drift_match_pandas(df):
    window = 12
    prof = profile_sensors(df, window=window)
    x = _sensors(df)
    pd.testing.assert_frame_equal(prof.correlation, x.corr(), check_names=False)
    sign = np.sign(x.diff())
    for a in x.columns:
        for b in x.columns:
            both = sign[a].notna() & sign[b].notna()
            expected = (sign[a][both] == sign[b][both]).mean()
            assert prof.agreement.loc[a, b] == pytest.approx(expected), (a, b)
    dw = prof.drift_window
    assert dw == 20 == drift_window(12, 60)                # at least MIN_DRIFT_ROWS rows
    per_window = np.stack([x.iloc[k * dw:(k + 1) * dw].corr().to_numpy() for k in range(len(x) // dw)])
    drift = pd.DataFrame(per_window.reshape(len(per_window), -1)).std().to_numpy().reshape(3, 3)
    np.testing.assert_allclose(prof.correlation_drift.to_numpy(), drift, atol=1e-12)
    same, opposite = prof.agreement.to_numpy(), prof.opposition.to_numpy()
    off = np.maximum(same, opposite)
    np.fill_diagonal(off, -1)
    best = off.argmax(axis=1)
    assert list(prof.summary["moves_with"]) == [prof.sensors[j] for j in best]
    np.testing.assert_allclose(prof.summary["agreement"], off[np.arange(3), best])
    assert list(prof.summary["relation"]) == ["opposite" if opposite[i, j] > same[i, j] else "same"
                                              for i, j in enumerate(best)]


def test_opposition_matches_a_loop_with_missing_values():
    x = pd.DataFrame({"a": [1.0, 2.0, 1.0, 1.0, np.nan, 3.0, 2.0, 4.0, 4.0, 5.0],
                      "b": [5.0, 4.0, 4.0, 6.0, 5.0, 3.0, np.nan, 1.0, 2.0, 2.0],
                      "c": [0.0, 0.0, 1.0, 0.0, 0.0, np.nan, 2.0, 1.0, 0.0, 0.0]})
    prof = profile_sensors(x, window=3)
    d = x.diff().iloc[1:]
    for a in x.columns:
        for b in x.columns:
            opposite = n = same = 0
            for da, db in zip(d[a], d[b]):
                if np.isnan(da) or np.isnan(db):
                    continue                              # pairwise-valid steps only
                n += 1
                opposite += (da > 0 and db < 0) or (da < 0 and db > 0)
                same += np.sign(da) == np.sign(db)
            assert prof.opposition.loc[a, b] == pytest.approx(opposite / n), (a, b)
            assert prof.agreement.loc[a, b] == pytest.approx(same / n), (a, b)
    # a, b steps: (1, -1) opposite, (-1, 0), (0, 2), (0, 1), (1, 0); four steps miss one of them
    assert prof.opposition.loc["a", "b"] == pytest.approx(1 / 5)
    assert prof.agreement.loc["a", "b"] == 0.0
    np.testing.assert_array_equal(np.diag(prof.opposition), 0.0)
    pd.testing.assert_frame_equal(prof.opposition, prof.opposition.T)
    assert list(prof.opposition.index) == list(prof.opposition.columns) == ["a", "b", "c"]


def test_an_opposite_mover_gets_its_partner_with_relation_opposite():
    rng = np.random.default_rng(3)
    base = np.cumsum(rng.standard_normal(400))
    x = pd.DataFrame({"noise": rng.standard_normal(400),
                      "up": base + 0.05 * rng.standard_normal(400),
                      "twin": 2 * base + 0.05 * rng.standard_normal(400),
                      "against": -base + 0.05 * rng.standard_normal(400),
                      "other": np.cumsum(rng.standard_normal(400))})
    x.iloc[[10, 11, 200], 3] = np.nan
    s = profile_sensors(x, window=20).summary
    assert s.loc["against", "moves_with"] in ("up", "twin") and s.loc["against", "relation"] == "opposite"
    partner = s.loc["against", "moves_with"]
    prof = profile_sensors(x, window=20)
    assert s.loc["against", "agreement"] == prof.opposition.loc["against", partner] > 0.9
    assert prof.agreement.loc["against", partner] < 0.1    # by the same-way share alone it was no partner
    assert (s.loc["up", "moves_with"], s.loc["up", "relation"]) == ("twin", "same")
    assert s.loc["up", "agreement"] == prof.agreement.loc["up", "twin"]
    assert set(s["relation"]) <= {"same", "opposite"}
    single = profile_sensors(x[["up"]], window=20).summary
    assert (single.loc["up", "moves_with"], single.loc["up", "relation"]) == ("", "")
    assert np.isnan(single.loc["up", "agreement"])


def test_correlation_and_agreement_without_missing_values_match_pandas(df):
    x = _sensors(df).interpolate().bfill().assign(flat=0.1, steps_copy=lambda t: 3 * t["steps"])
    prof = profile_sensors(x, window=10)                   # no NaN: the blocked cross-product path
    pd.testing.assert_frame_equal(prof.correlation, x.corr(), check_names=False, atol=1e-12)
    sign = np.sign(x.diff().iloc[1:])
    expected = np.array([[(sign[a] == sign[b]).mean() for b in x.columns] for a in x.columns])
    np.testing.assert_allclose(prof.agreement.to_numpy(), expected)
    assert prof.agreement.loc["steps", "steps_copy"] == 1.0
    opposite = np.array([[((sign[a] * sign[b]) < 0).mean() for b in x.columns] for a in x.columns])
    np.testing.assert_allclose(prof.opposition.to_numpy(), opposite)


def test_drift_window_bounds_and_long_windows():
    assert drift_window(30, 29_221) == 30 and drift_window(2, 5_000) == MIN_DRIFT_ROWS
    assert drift_window(2, 29_221) == 30                  # at most MAX_DRIFT_WINDOWS windows
    assert drift_window(30, 1_000_000) == 1_000_000 // MAX_DRIFT_WINDOWS
    assert drift_window(50, 40) == 40
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.standard_normal((1200, 3)), columns=list("abc"))
    x.iloc[::7, 1] = np.nan
    prof = profile_sensors(x, window=400)                  # windows longer than one block of rows
    per_window = np.stack([x.iloc[k * 400:(k + 1) * 400].corr().to_numpy() for k in range(3)])
    expected = pd.DataFrame(per_window.reshape(3, -1)).std().to_numpy().reshape(3, 3)
    np.testing.assert_allclose(prof.correlation_drift.to_numpy(), expected, atol=1e-12)


def test_rolling_correlation_of_a_pair(df):
    prof = profile_sensors(df, window=9)
    x = _sensors(df)
    r = prof.rolling_correlation("walk", "sine")
    expected = x["walk"].rolling(9, min_periods=2).corr(x["sine"])
    expected.iloc[:8] = np.nan
    pd.testing.assert_series_equal(r, expected, check_names=False)
    r5 = prof.rolling_correlation("walk", "sine", window=5)
    assert r5.iloc[4:].notna().sum() > 40 and r5.iloc[:4].isna().all()
    with pytest.raises(DataError, match="No sensor named 'nope'"):
        prof.rolling_correlation("walk", "nope")
    with pytest.raises(ConfigError):
        prof.rolling_correlation("walk", "sine", window=1)


def test_constant_sensor_has_no_correlation_and_no_rate_ratio():
    x = pd.DataFrame({"a": np.arange(20.0) ** 1.5, "flat": np.ones(20), "b": np.sin(np.arange(20))})
    prof = profile_sensors(x, window=5)
    assert prof.correlation.loc["flat"].drop("flat").isna().all()
    assert np.isnan(prof.summary.loc["flat", "max_rate_scaled"])
    assert prof.summary.loc["flat", "equal"] == 19 and prof.summary.loc["flat", "activity"] == 0
    assert prof.correlation_drift.loc["a", "flat"] != prof.correlation_drift.loc["a", "flat"]  # NaN


# ----------------------------------------------------------------------------------- inputs

def test_caller_data_is_not_modified_and_values_are_read_only(df):
    before = df.copy()
    prof = profile_sensors(df, window=10)
    pd.testing.assert_frame_equal(df, before)
    with pytest.raises(ValueError):
        prof.values[0, 0] = 1.0
    with pytest.raises(AttributeError):
        prof.window = 3  # frozen


def test_row_order_arrays_and_series_views():
    arr = np.column_stack([np.arange(30.0) % 7, np.cos(np.arange(30.0))])
    prof = profile_sensors(arr, window=6, threshold=0)
    assert prof.sensors == ("sensor_0", "sensor_1") and prof.time_unit is None and prof.rate_unit == "per row"
    pd.testing.assert_frame_equal(prof.rate, prof.change)
    assert isinstance(prof, SensorProfile) and "30 rows x 2 sensors" in repr(prof)
    np.testing.assert_allclose(prof.window_mean_rate.iloc[1:], prof.window_mean_change.iloc[1:] / 6)

    class View:  # the dashboard's SeriesView shape
        values = arr
        index = pd.RangeIndex(30)
        sensors = ("p", "q")

    assert profile_sensors(View(), window=6).sensors == ("p", "q")
    only = profile_sensors(pd.DataFrame(arr, columns=["u", "v"]), window=6, sensors=["v"])
    assert only.sensors == ("v",) and only.correlation.shape == (1, 1)


def test_time_unit_changes_the_rates(df):
    hourly = profile_sensors(df, window=10, time_unit="1h")
    daily = profile_sensors(df, window=10)
    np.testing.assert_allclose(hourly.rate.to_numpy(), daily.rate.to_numpy() / 24)
    assert hourly.rate_unit == "per hour"
    assert profile_sensors(df, window=10, time_unit="10min").rate_unit == "per 10 min"


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=1), "at least 2"),
    (dict(window=61), "only 60 rows"),
    (dict(window=3.5), "whole number"),
    (dict(window=True), "whole number"),
    (dict(threshold=-1), "threshold must be a number >= 0"),
    (dict(threshold=float("nan")), "threshold"),
    (dict(threshold="high"), "threshold"),
    (dict(step=0), "step must be"),
    (dict(time_unit="soon"), "time_unit must be a duration"),
    (dict(time_unit="-1D"), "positive"),
])
def test_bad_settings_raise_config_errors(df, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        profile_sensors(df, **{"window": 10, **kwargs})


def test_bad_data_raises_data_errors(df):
    with pytest.raises(DataError, match="time order"):
        profile_sensors(df.iloc[::-1], window=5)
    with pytest.raises(DataError, match="duplicate timestamps"):
        profile_sensors(pd.concat([df.iloc[:5], df.iloc[4:10]]), window=5)
    with pytest.raises(DataError, match="no numeric column"):
        profile_sensors(df[["note"]], window=5)
    with pytest.raises(DataError, match="at least 2 rows"):
        profile_sensors(df.iloc[:1], window=2)
    with pytest.raises(DataError, match="No column named 'nope'"):
        profile_sensors(df, window=5, sensors=["walk", "nope"])
    with pytest.raises(DataError, match="'note' is not numeric"):
        profile_sensors(df, window=5, sensors=["walk", "note"])
    with pytest.raises(DataError, match="Expected a pandas DataFrame"):
        profile_sensors({"a": [1, 2, 3]}, window=2)
    with pytest.raises(ConfigError, match="time_unit needs a DatetimeIndex"):
        profile_sensors(np.ones((5, 2)), window=2, time_unit="1D")


# ----------------------------------------------------------------------------------- suggestion

def _suggestion_table(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    a = np.sin(np.arange(n) / 9) + 0.3 * rng.standard_normal(n)   # no trend: not like the counter
    rare = np.zeros(n)
    rare[[n // 8, n // 2]] = 1.0              # changes in 4 of n - 1 steps
    return pd.DataFrame({
        "a": a,
        "a_twice": 2 * a + 1 + 0.001 * rng.standard_normal(n),   # redundant with a
        "b": rng.standard_normal(n),
        "counter": np.arange(n, dtype=float),                   # only ever rises: no information
        "flat": np.full(n, 3.0),
        "rare": rare,
    })


def test_suggestion_leaves_out_redundant_flat_and_rare_sensors():
    prof = profile_sensors(_suggestion_table(), window=20)
    sg = prof.suggest_sensors(max_correlation=0.95, min_activity=0.05)
    t = sg.table
    assert set(sg.sensors) == {"b", "counter"} | ({"a"} if "a" in sg.sensors else {"a_twice"})
    assert ("a" in sg.sensors) != ("a_twice" in sg.sensors)
    dropped = "a_twice" if "a" in sg.sensors else "a"
    assert t.loc[dropped, "reason"].startswith(f"redundant with {'a' if dropped == 'a_twice' else 'a_twice'}")
    assert t.loc["flat", "reason"] == "never changes" and not t.loc["flat", "keep"]
    assert t.loc["rare", "reason"].startswith("rarely changes (in 1% of its steps)")
    assert t.loc["counter", "information"] == 0.0
    assert list(t.index[: len(sg.sensors)]) == list(sg.sensors) and t["keep"].sum() == len(sg.sensors)
    assert list(t["rank"]) == list(range(1, 7)) and set(sg.left_out) == set(t.index) - set(sg.sensors)
    # entropy: b rises and falls evenly and is never flat -> log(2)/log(3)
    assert t.loc["b", "information"] == pytest.approx(np.log(2) / np.log(3), abs=0.01)
    # the counter is chosen only after the informative ones (score 0 - its correlation with a)
    assert sg.sensors.index("counter") == len(sg.sensors) - 1
    assert prof.suggest_sensors(top=1).sensors == sg.sensors[:1]
    assert prof.suggest_sensors(top=1).table["reason"].str.contains("beyond the top 1").any()
    loose = prof.suggest_sensors(max_correlation=1.0, min_activity=0.0)
    assert {"a", "a_twice", "rare"} <= set(loose.sensors) and "flat" not in loose.sensors


@pytest.mark.parametrize("kwargs", [dict(max_correlation=0), dict(max_correlation=1.5),
                                    dict(min_activity=-0.1), dict(top=0), dict(top=2.5)])
def test_suggestion_refuses_bad_settings(kwargs):
    prof = profile_sensors(_suggestion_table(60), window=10)
    with pytest.raises(ConfigError):
        prof.suggest_sensors(**kwargs)


# ----------------------------------------------------------------------------------- imports, real data

def test_profile_module_imports_no_ui_and_no_torch():
    code = textwrap.dedent("""
        import json, sys
        import msda_widgets
        from msda_widgets import profile_sensors
        import numpy as np
        profile_sensors(np.random.default_rng(0).standard_normal((50, 3)), window=5)
        print(json.dumps([m for m in ("torch", "ipywidgets", "bqplot", "traitlets") if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.shared_data
def test_canadian_climate_profile(shared_data):
    from msda_widgets import load_csv
    df = load_csv(shared_data / "msda" / "Canadian_climate_history.csv")
    prof = profile_sensors(df, window=30)
    assert prof.n_rows == 29221 and len(prof.sensors) == 26 and prof.rate_unit == "per day"
    assert prof.n_windows == 29221 // 30
    sg = prof.suggest_sensors(max_correlation=0.95)
    left_out = set(sg.left_out)
    # Montreal and Ottawa temperatures correlate at 0.99: at most one of them is suggested
    assert {"MEAN_TEMPERATURE_MONTREAL", "MEAN_TEMPERATURE_OTTAWA"} & left_out
    assert all(s.startswith("MEAN_TEMPERATURE") for s in left_out)
    assert prof.features().shape == (prof.n_windows, 26 * len(FEATURE_NAMES))
