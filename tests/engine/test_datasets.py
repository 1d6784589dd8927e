"""Tests of the built-in generated data (msda_widgets.datasets)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from msda_widgets import datasets as ds
from msda_widgets.datasets import ANOMALY_KINDS, AnomalyEvent, LabelledData, damped_sines, demo, make_sensors
from msda_widgets.errors import ConfigError

SPEC_LENGTHS = {"spike": (1, 1), "level_shift": (20, 60), "drift": (60, 150), "stuck": (30, 80),
                "noise_burst": (20, 50), "broken_correlation": (40, 100)}
NAMED = ["temperature", "pressure", "flow", "vibration", "current", "voltage", "humidity", "rpm"]


@pytest.fixture(scope="module")
def default() -> LabelledData:
    return make_sensors()


def _positions(ld: LabelledData, event: AnomalyEvent) -> tuple[int, int]:
    return ld.data.index.get_loc(event.start), ld.data.index.get_loc(event.end)


def _assert_same(a: LabelledData, b: LabelledData) -> None:
    pd.testing.assert_frame_equal(a.data, b.data, check_exact=True)
    pd.testing.assert_series_equal(a.labels, b.labels, check_exact=True)
    pd.testing.assert_frame_equal(a.culprits, b.culprits, check_exact=True)
    assert a.events == b.events
    assert a.description == b.description


def _assert_bookkeeping(ld: LabelledData) -> None:
    """labels == union of event spans; culprits True exactly on (span, event sensors)."""
    expected_labels = pd.Series(False, index=ld.data.index, name="anomaly")
    expected_culprits = pd.DataFrame(False, index=ld.data.index, columns=ld.data.columns)
    for e in ld.events:
        lo, hi = _positions(ld, e)
        assert lo <= hi
        expected_labels.iloc[lo:hi + 1] = True
        for s in e.sensors:
            expected_culprits.iloc[lo:hi + 1, ld.data.columns.get_loc(s)] = True
    pd.testing.assert_series_equal(ld.labels, expected_labels)
    pd.testing.assert_frame_equal(ld.culprits, expected_culprits)
    assert ld.labels.dtype == bool and ld.culprits.dtypes.eq(bool).all()


# ------------------------------------------------------------------ determinism


def test_same_seed_is_bit_identical():
    _assert_same(make_sensors(n_steps=2000, seed=7), make_sensors(n_steps=2000, seed=7))
    _assert_same(damped_sines(seed=7), damped_sines(seed=7))


def test_other_seed_differs():
    a, b = make_sensors(n_steps=2000, seed=1), make_sensors(n_steps=2000, seed=2)
    assert not np.allclose(a.data.to_numpy(), b.data.to_numpy())
    assert [e.start for e in a.events] != [e.start for e in b.events]
    assert not np.allclose(damped_sines(seed=1).data.to_numpy(), damped_sines(seed=2).data.to_numpy())


def test_clean_series_does_not_depend_on_the_anomalies():
    clean = make_sensors(n_steps=3000, anomalies=0, seed=4)
    for anomalies in (1, 5, 12):
        dirty = make_sensors(n_steps=3000, anomalies=anomalies, seed=4)
        untouched = ~dirty.culprits.to_numpy()
        np.testing.assert_array_equal(dirty.data.to_numpy()[untouched], clean.data.to_numpy()[untouched])
        assert not np.array_equal(dirty.data.to_numpy(), clean.data.to_numpy())


def test_a_sensor_does_not_depend_on_how_many_sensors_are_generated():
    few = make_sensors(n_steps=1000, n_sensors=3, anomalies=0, seed=5).data
    many = make_sensors(n_steps=1000, n_sensors=12, anomalies=0, seed=5).data
    pd.testing.assert_frame_equal(few, many[few.columns], check_exact=True)


# ------------------------------------------------------------------ shapes, names, bookkeeping


def test_shapes_names_and_dtypes(default):
    d = default.data
    assert d.shape == (5000, 8)
    assert list(d.columns) == NAMED
    assert isinstance(d.index, pd.DatetimeIndex) and d.index.name == "timestamp"
    assert d.index[0] == pd.Timestamp("2024-01-01") and d.index[1] - d.index[0] == pd.Timedelta(hours=1)
    assert d.dtypes.eq(np.float64).all()
    assert np.isfinite(d.to_numpy()).all()
    assert "anomaly" not in d.columns
    assert default.labels.name == "anomaly" and default.labels.index.equals(d.index)
    assert default.culprits.index.equals(d.index) and default.culprits.columns.equals(d.columns)
    assert len(default.events) == 12
    assert default.name and len(default.description) > 100 and "\n" not in default.description


def test_sensor_names_beyond_eight():
    ld = make_sensors(n_steps=2000, n_sensors=11, anomalies=3, seed=0)
    assert list(ld.data.columns) == NAMED + ["sensor_09", "sensor_10", "sensor_11"]


def test_physical_ranges_of_clean_data():
    clean = make_sensors(anomalies=0, seed=3).data
    lo, hi = clean.quantile(0.01), clean.quantile(0.99)
    assert 15 < lo["temperature"] and hi["temperature"] < 85
    assert 0.5 < lo["pressure"] and hi["pressure"] < 5.5
    assert 900 < lo["rpm"] and hi["rpm"] < 3100
    assert clean.std().gt(0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_and_culprits_match_events(seed):
    _assert_bookkeeping(make_sensors(seed=seed))
    _assert_bookkeeping(damped_sines(seed=seed))


def test_each_event_alters_one_or_two_sensors(default):
    counts = [len(e.sensors) for e in default.events]
    assert set(counts) <= {1, 2}
    for e in default.events:
        assert list(e.sensors) == [c for c in default.data.columns if c in e.sensors]  # column order


def test_kinds_cycle_in_time_order(default):
    assert [e.kind for e in default.events] == list(ANOMALY_KINDS) * 2
    starts = [e.start for e in default.events]
    assert starts == sorted(starts)
    custom = make_sensors(anomalies=5, kinds=("stuck", "spike"), seed=1)
    assert [e.kind for e in custom.events] == ["stuck", "spike", "stuck", "spike", "stuck"]


@pytest.mark.parametrize("seed", range(5))
def test_placement_rules(seed):
    ld = make_sensors(seed=seed)
    n = len(ld.data)
    spans = [_positions(ld, e) for e in ld.events]
    assert spans[0][0] >= n / 10
    assert not ld.labels.iloc[: n // 10].any()
    for (_, prev_end), (next_start, _) in zip(spans, spans[1:]):
        assert next_start - prev_end - 1 >= 50
    for e, (lo, hi) in zip(ld.events, spans):
        low, high = SPEC_LENGTHS[e.kind]
        assert low <= hi - lo + 1 <= high, e


def test_sensors_are_correlated(default):
    clean_rows = default.data[~default.labels]
    corr = np.corrcoef(clean_rows.to_numpy().T)
    off_diagonal = corr[~np.eye(len(corr), dtype=bool)]
    assert np.abs(off_diagonal).mean() > 0.3


# ------------------------------------------------------------------ each kind is what it says


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_kind_is_visible_against_the_clean_reference(kind, seed):
    ld = make_sensors(n_steps=3000, anomalies=6, kinds=(kind,), seed=seed)
    clean = make_sensors(n_steps=3000, anomalies=0, seed=seed).data
    std = clean.std()
    assert [e.kind for e in ld.events] == [kind] * 6
    for e in ld.events:
        for s in e.sensors:
            got, ref = ld.data.loc[e.start:e.end, s], clean.loc[e.start:e.end, s]
            diff = got - ref
            assert diff.abs().max() >= 2 * std[s], (e, s)
            if kind == "spike":
                assert len(got) == 1 and 6 * std[s] <= diff.abs().iloc[0] <= 10 * std[s]
            elif kind == "level_shift":
                assert np.allclose(diff, diff.iloc[0]) and 3 * std[s] <= abs(diff.iloc[0]) <= 5 * std[s]
            elif kind == "drift":
                steps = np.diff(diff.to_numpy())
                assert np.allclose(steps, steps[0]) and 4 * std[s] <= abs(diff.iloc[-1]) <= 6 * std[s]
            elif kind == "stuck":
                assert (got == ref.iloc[0]).all()
            elif kind == "noise_burst":
                assert diff.std() > 1.5 * std[s]
            else:  # broken_correlation: moves against its clean self, level stays plausible
                assert np.corrcoef(got, ref)[0, 1] < 0
                assert abs(got.mean() - ref.mean()) < std[s]
                assert clean[s].min() - std[s] <= got.min() and got.max() <= clean[s].max() + std[s]


def test_broken_correlation_breaks_the_correlation_with_the_other_sensors():
    ld = make_sensors(n_sensors=8, anomalies=3, kinds="broken_correlation", seed=11)
    clean = make_sensors(n_sensors=8, anomalies=0, seed=11).data
    for e in ld.events:
        window = slice(e.start, e.end)
        for s in e.sensors:
            others = [c for c in ld.data.columns if c not in e.sensors]
            before = clean.loc[window, others].corrwith(clean.loc[window, s])
            after = ld.data.loc[window, others].corrwith(ld.data.loc[window, s])
            assert np.all(np.sign(after[before.abs() > 0.5]) == -np.sign(before[before.abs() > 0.5]))


# ------------------------------------------------------------------ sizes and errors


def test_one_sensor_and_five_hundred_sensors():
    one = make_sensors(n_sensors=1, seed=2)
    assert list(one.data.columns) == ["temperature"] and len(one.events) == 12
    assert all(e.sensors == ("temperature",) for e in one.events)
    _assert_bookkeeping(one)
    many = make_sensors(n_steps=2000, n_sensors=500, anomalies=6, seed=2)
    assert many.data.shape == (2000, 500)
    assert many.data.columns[-1] == "sensor_500"
    assert np.isfinite(many.data.to_numpy()).all()
    corr = np.corrcoef(many.data[~many.labels].to_numpy().T)
    assert np.abs(corr[~np.eye(500, dtype=bool)]).mean() > 0.3
    _assert_bookkeeping(many)


def test_too_few_steps_says_how_many_are_needed():
    with pytest.raises(ValueError, match=r"n_steps >= \d+") as info:
        make_sensors(n_steps=1000)
    assert isinstance(info.value, ConfigError)
    needed = int(str(info.value).split("n_steps >= ")[1].split()[0])
    assert 1000 < needed <= 5000
    for seed in range(10):  # the number is enough for any seed
        ld = make_sensors(n_steps=needed, seed=seed)
        assert len(ld.events) == 12
        _assert_bookkeeping(ld)
    with pytest.raises(ValueError, match=str(needed)):
        make_sensors(n_steps=needed - 1)
    with pytest.raises(ValueError, match=r"n_steps >= \d+"):
        damped_sines(n_steps=300)


def test_no_anomalies_fits_anywhere():
    ld = make_sensors(n_steps=5, anomalies=0)
    assert ld.data.shape == (5, 8) and not ld.labels.any() and ld.events == ()


@pytest.mark.parametrize("kwargs, word", [
    ({"kinds": ("spike", "meteor")}, "meteor"),
    ({"kinds": ()}, "kinds"),
    ({"n_sensors": 0}, "n_sensors"),
    ({"anomalies": -1}, "anomalies"),
    ({"noise": -0.1}, "noise"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"freq": "not-a-freq"}, "freq"),
])
def test_bad_settings_are_refused_by_name(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_sensors(n_steps=2000, **kwargs)


# ------------------------------------------------------------------ damped sines, demo, helpers


def test_damped_sines_basics():
    ld = damped_sines()
    assert ld.data.shape == (3000, 3)
    assert list(ld.data.columns) == ["wave_1", "wave_2", "wave_3"]
    assert ld.data.index[0] == pd.Timestamp("2024-01-01") and ld.data.index.freqstr == "s"
    assert ld.data.dtypes.eq(np.float64).all() and np.isfinite(ld.data.to_numpy()).all()
    assert [e.kind for e in ld.events] == ["spike", "stuck", "noise_burst", "level_shift"]
    clean = damped_sines(anomalies=0).data
    assert clean.abs().max().max() < 2.2  # amplitude <= 2 plus small noise
    assert clean.abs().max().min() > 0.4
    # damped: within the first segment (>= 100 steps) the envelope decays
    first = clean["wave_1"].to_numpy()[:100]
    assert np.abs(first[:25]).max() > np.abs(first[75:]).max()
    n = len(ld.data)
    spans = [_positions(ld, e) for e in ld.events]
    assert spans[0][0] >= n / 10
    assert all(b[0] - a[1] - 1 >= 50 for a, b in zip(spans, spans[1:]))
    many = damped_sines(n_steps=4000, n_sensors=2, anomalies=9, seed=3)
    assert [e.kind for e in many.events][:5] == ["spike", "stuck", "noise_burst", "level_shift", "spike"]
    _assert_bookkeeping(many)


@pytest.mark.parametrize("seed", range(4))
def test_damped_sines_faults_are_visible(seed):
    ld = damped_sines(anomalies=4, seed=seed)
    clean = damped_sines(anomalies=0, seed=seed).data
    untouched = ~ld.culprits.to_numpy()
    np.testing.assert_array_equal(ld.data.to_numpy()[untouched], clean.to_numpy()[untouched])
    std = clean.std()
    for e in ld.events:
        for s in e.sensors:
            diff = ld.data.loc[e.start:e.end, s] - clean.loc[e.start:e.end, s]
            assert diff.abs().max() >= 2 * std[s], (e, s)


def test_demo_is_make_sensors_with_defaults(default):
    _assert_same(demo(), default)
    _assert_same(demo(seed=3), make_sensors(seed=3))


def test_events_frame_and_with_labels(default):
    frame = default.events_frame()
    assert list(frame.columns) == ["kind", "start", "end", "sensors", "n_steps"]
    assert len(frame) == 12 and frame["n_steps"].sum() == default.labels.sum()
    first = default.events[0]
    assert frame.loc[0, "sensors"] == ", ".join(first.sensors) and frame.loc[0, "start"] == first.start
    assert (frame.loc[frame["kind"] == "spike", "n_steps"] == 1).all()
    table = default.with_labels()
    assert list(table.columns) == NAMED + ["anomaly"]
    assert table["anomaly"].dtype == np.int64 and set(table["anomaly"].unique()) == {0, 1}
    assert (table["anomaly"] == default.labels.astype(int)).all()
    assert "anomaly" not in default.data.columns  # the data itself is untouched
    assert "12 events" in repr(default)


def test_quiet_and_free_of_heavy_imports(capsys):
    make_sensors(n_steps=2000, seed=1)
    damped_sines(seed=1)
    assert capsys.readouterr() == ("", "")
    code = ("import sys, msda_widgets.datasets as d; d.demo(); "
            "bad = [m for m in ('torch', 'ipywidgets', 'bqplot') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
