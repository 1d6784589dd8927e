"""The bad-data corpus (tests/data/bad/, described by cases.json): every bad input is a clear
message, nothing is lost.

Through the API (``load_csv`` then ``Detector.fit``) each file either raises :class:`DataError`
with the documented message or loads with the documented result; no other exception type may
escape. Through the dashboard (a :class:`Controller` that already shows good data and a trained
model) each bad file gives a plain sentence in the status line, and the previous data, model and
results stay in place and keep working. The big cases (500 sensors, 1,000,000 rows, a 50 MB
upload) are generated here in ``tmp_path``, never committed.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msda_widgets.app import controller as controller_module
from msda_widgets.app.controller import Controller
from msda_widgets.app.state import AppState
from msda_widgets.engine.data import DataPipeline, load_csv
from msda_widgets.engine.detector import Detector
from msda_widgets.errors import DataError
from tests.conftest import make_series

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
MANIFEST = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))
CASES = {c["file"]: c for c in MANIFEST["cases"]}
LOOKBACK = int(MANIFEST["lookback"])
ERRORS = [f for f, c in CASES.items() if "error" in c["api"]]
OKS = [f for f, c in CASES.items() if "ok" in c["api"]]
#: A tiny, fast model: one epoch, one thread.
TINY = dict(lookback=LOOKBACK, epochs=1, num_threads=1, batch_size=64, conv_channels=(4,), dense_units=4,
            seed=0, patience=0)
#: What a status line must never show: a traceback, an exception class, a code location.
LEAKS = re.compile(r"Traceback|\b\w*(Error|Exception|Warning)\b(?<!DataError)|File \"|line \d+, in |"
                   r"Something went wrong|<class |0x[0-9a-f]{6,}")
KEPT = ("data_name", "series", "detector", "results", "flags", "threshold", "n_anomalies", "anomalies",
        "columns", "time_column", "settings", "data_messages")


def _path(name: str) -> Path:
    return BAD / name


def assert_plain(message: str) -> None:
    """A sentence a person can read: no traceback, no exception class names, ends with a full stop."""
    assert message.strip(), "empty status message"
    assert not LEAKS.search(message), f"status line leaks internals: {message!r}"
    assert "\n" not in message.strip(), f"multi-line status message: {message!r}"
    assert message.rstrip().endswith((".", ")")), f"not a finished sentence: {message!r}"


# ------------------------------------------------------------------------------------------------
# the manifest itself
# ------------------------------------------------------------------------------------------------

def test_manifest_lists_every_committed_file_and_each_is_small():
    on_disk = {p.name for p in BAD.iterdir() if p.is_file() and p.name not in ("cases.json", "make_corpus.py")}
    assert on_disk == set(CASES), (sorted(on_disk - set(CASES)), sorted(set(CASES) - on_disk))
    assert len(on_disk) >= 40
    for name in on_disk:
        assert (BAD / name).stat().st_size < 50_000, name
    for case in MANIFEST["cases"]:
        api, dash = case["api"], case["dashboard"]
        assert case["what"] and (("error" in api) != ("ok" in api)), case["file"]
        if "error" in api:
            assert api["error"] == "DataError" and api["message"] and dash["level"] == "error"
        else:
            assert api["sensors"] and api["rows"] > 0 and api["time"] in ("datetime", "utc", "row order")
            assert dash["level"] == "success"
    generated = {g["name"] for g in MANIFEST["generated"]}
    assert generated == {"sensors_500", "rows_1e6", "upload_50mb"}


def test_corpus_files_match_their_generator(tmp_path):
    """make_corpus.py regenerates exactly the committed bytes (so the corpus can be rebuilt)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_corpus", BAD / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    made = module.files()
    assert set(made) == set(CASES)
    for name, data in made.items():
        assert (BAD / name).read_bytes() == data, name


# ------------------------------------------------------------------------------------------------
# API: load_csv + Detector.fit
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ERRORS)
def test_api_bad_file_raises_data_error_with_its_message(name):
    expected = CASES[name]["api"]["message"]
    with pytest.raises(DataError) as info:  # any other exception type fails the test
        Detector(**TINY).fit(load_csv(_path(name)))
    assert type(info.value) is DataError
    assert expected in str(info.value)
    assert_plain(str(info.value))
    with pytest.raises(DataError) as info:  # the path given to the detector directly: same message
        Detector(**TINY).fit(str(_path(name)))
    assert expected in str(info.value)


def _reference() -> pd.DataFrame:
    return load_csv(_path("semicolon_sep.csv"))


@pytest.mark.parametrize("name", OKS)
def test_api_odd_but_usable_file_gives_the_documented_result(name):
    api = CASES[name]["api"]
    frame = load_csv(_path(name))
    sd = DataPipeline().fit_prepare(frame, min_rows=LOOKBACK + 2)
    assert list(sd.sensors) == api["sensors"]
    assert sd.values.shape == (api["rows"], len(api["sensors"]))
    assert np.isfinite(sd.values).all()
    if api["time"] == "row order":
        assert isinstance(sd.index, pd.RangeIndex)
    else:
        assert isinstance(sd.index, pd.DatetimeIndex) and sd.index.is_monotonic_increasing
        assert (str(sd.index.tz) == "UTC") if api["time"] == "utc" else sd.index.tz is None
    messages = sd.report.messages()
    for m in api["messages"]:
        assert m in messages, messages
    if not api["messages"]:
        assert messages == [], messages  # nothing to report: nothing was changed
    if "same_values_as" in api:  # the same table in another dress: every value survives
        ref = DataPipeline().fit_prepare(load_csv(_path(api["same_values_as"])))
        np.testing.assert_array_equal(sd.values, ref.values)
        assert sd.index.equals(ref.index)
    det = Detector(**TINY).fit(frame)
    assert np.isfinite(det.threshold_)
    scores = det.score(frame)
    assert np.isfinite(scores.to_numpy()[LOOKBACK:]).all()


def test_api_specific_results():
    """Spot checks of what the documented results mean, value by value."""
    thousands = load_csv(_path("thousands_separators.csv"))
    assert thousands["a"].iloc[:3].tolist() == [1000.5, 1037.5, 1074.5]
    epoch = load_csv(_path("epoch_seconds.csv"))
    assert epoch.index.name == "timestamp" and epoch.index[0] == pd.Timestamp("2024-01-01 00:00")
    assert "timestamp" not in epoch.columns
    mixed = load_csv(_path("mixed_timezones.csv"))
    assert mixed.index[20] == pd.Timestamp("2024-01-01 20:00", tz="UTC")  # 22:00+02:00
    unsorted = load_csv(_path("unsorted_timestamps.csv"))
    assert unsorted.index.is_monotonic_increasing
    dup = DataPipeline().fit_prepare(load_csv(_path("duplicate_timestamps.csv")))
    assert dup.report.duplicate_timestamps == 5
    headerless = load_csv(_path("headerless_numbers.csv"))
    assert len(headerless) == 40 and headerless.iloc[0, 1] == 10.5162  # the first line is data
    bom = load_csv(_path("utf8_bom.csv"))
    assert bom.index.name == "time"
    na = DataPipeline().fit_prepare(load_csv(_path("na_markers.csv")))
    assert int(na.missing.sum()) == 10


# ------------------------------------------------------------------------------------------------
# Dashboard: a controller with good data and a trained model gets each bad file
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    ctl = Controller(AppState(), settings=TINY, warm_up=False)
    assert ctl.load(make_series(n=300, n_sensors=3, spike_at=200), name="good.csv")
    assert ctl.train()
    assert ctl.wait(120)
    assert ctl.state.task == "finished", ctl.state.message
    assert ctl.state.results is not None and ctl.state.n_anomalies > 0
    return ctl


def _snapshot(ctl: Controller) -> dict:
    return {k: getattr(ctl.state, k) for k in KEPT} | {"frame": ctl.frame}


def _assert_kept_and_usable(ctl: Controller, before: dict) -> None:
    now = _snapshot(ctl)
    for k, v in before.items():
        assert now[k] is v, f"state.{k} changed"
    # still usable: the threshold moves and an anomaly can be selected and explained
    ctl.set_threshold("quantile", 0.95)
    assert ctl.state.level == "info" and ctl.state.n_anomalies > 0, ctl.state.message
    first = int(np.flatnonzero(ctl.state.flags)[0])
    ctl.select(first)
    assert ctl.state.selected == first and ctl.state.level == "info", ctl.state.message


@pytest.mark.parametrize("name", ERRORS)
def test_dashboard_bad_file_is_a_plain_message_and_keeps_everything(trained, name):
    expected = CASES[name]["dashboard"]["message"]
    for how in ("load", "upload"):
        before = _snapshot(trained)
        if how == "load":
            assert trained.load(str(_path(name))) is False
        else:
            assert trained.load_upload(_path(name).read_bytes(), name) is False
        s = trained.state
        assert s.level == "error", (how, s.message)
        assert expected in s.message, (how, s.message)
        assert s.message.startswith((f"Could not read {name}: ", f"Could not use {name}: ")), (how, s.message)
        assert s.message.endswith(" The current data is kept."), (how, s.message)
        assert_plain(s.message)
        _assert_kept_and_usable(trained, before)


@pytest.mark.parametrize("name", OKS)
def test_dashboard_odd_but_usable_file_loads(name):
    expected = CASES[name]["dashboard"]["message"]
    for how in ("load", "upload"):
        ctl = Controller(AppState(), settings=TINY, warm_up=False)
        ok = ctl.load(str(_path(name))) if how == "load" else ctl.load_upload(_path(name).read_bytes(), name)
        s = ctl.state
        assert ok is True and s.level == "success", (how, s.message)
        assert expected in s.message and s.data_name == name, (how, s.message)
        assert_plain(s.message)
        assert list(s.series.sensors) == CASES[name]["api"]["sensors"]


def test_dashboard_ok_file_replaces_a_trained_model(trained):
    """Loading usable data is a switch: the old results go (they belong to the old data)."""
    ctl = Controller(AppState(), settings=TINY, warm_up=False)
    ctl.load(trained.frame, name="good.csv")
    ctl.state.results = trained.state.results  # pretend it was trained (a training run is slow)
    assert ctl.load(str(_path("semicolon_sep.csv")))
    assert ctl.state.results is None and ctl.state.detector is None and ctl.state.data_name == "semicolon_sep.csv"


# ------------------------------------------------------------------------------------------------
# generated cases: 500 sensors, 1,000,000 rows, a 50 MB upload
# ------------------------------------------------------------------------------------------------

def test_500_sensors(tmp_path):
    rng = np.random.default_rng(5)
    values = np.cumsum(rng.standard_normal((200, 500)), axis=0).round(3)
    frame = pd.DataFrame(values, columns=[f"s{k:03d}" for k in range(500)],
                         index=pd.date_range("2024-01-01", periods=200, freq="h", name="time"))
    path = tmp_path / "sensors_500.csv"
    frame.to_csv(path)
    loaded = load_csv(path)
    assert loaded.shape == (200, 500)
    det = Detector(**TINY).fit(loaded)
    assert np.isfinite(det.threshold_) and len(det.sensors_) == 500
    ctl = Controller(AppState(), settings=TINY, warm_up=False)
    assert ctl.load(str(path)) and "200 rows × 500 sensors" in ctl.state.message
    assert ctl.load_upload(path.read_bytes(), "sensors_500.csv")
    assert ctl.state.series.values.shape == (200, 500)


@pytest.mark.slow
def test_million_rows_load_in_reasonable_time(tmp_path):
    n = 1_000_000
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(rng.standard_normal((n, 3)).round(4), columns=["a", "b", "c"],
                         index=pd.date_range("2020-01-01", periods=n, freq="min", name="time"))
    path = tmp_path / "rows_1e6.csv"
    frame.to_csv(path)
    t0 = time.perf_counter()
    loaded = load_csv(path)
    sd = DataPipeline().fit_prepare(loaded, min_rows=LOOKBACK + 2)
    seconds = time.perf_counter() - t0
    assert sd.values.shape == (n, 3) and sd.index[-1] == frame.index[-1]
    np.testing.assert_array_equal(sd.values, frame.to_numpy())
    assert seconds < 60, f"1,000,000 rows took {seconds:.1f} s"
    assert path.stat().st_size > Controller.MAX_UPLOAD_BYTES  # the dashboard opens it by path
    ctl = Controller(AppState(), settings=TINY, warm_up=False)
    t0 = time.perf_counter()
    assert ctl.load(str(path)), ctl.state.message
    assert time.perf_counter() - t0 < 90
    assert "1,000,000 rows × 3 sensors" in ctl.state.message


def test_upload_above_the_limit_is_refused_before_parsing(trained, monkeypatch):
    calls = []
    monkeypatch.setattr(controller_module, "load_csv", lambda *a, **k: calls.append(a) or pytest.fail("parsed"))
    chunk = _path("semicolon_sep.csv").read_bytes()
    content = chunk * (50_000_000 // len(chunk) + 1)  # a real 50 MB CSV
    assert len(content) >= 50_000_000
    before = _snapshot(trained)
    t0 = time.perf_counter()
    assert trained.load_upload(content, "big.csv") is False
    assert time.perf_counter() - t0 < 1.0
    assert calls == []
    s = trained.state
    assert s.level == "error" and "uploads are limited to 10.0 MB" in s.message and "big.csv" in s.message
    assert "Dashboard('path/to/file.csv')" in s.message
    assert_plain(s.message)
    # one byte over the limit is refused too
    assert trained.load_upload(b"x" * (trained.MAX_UPLOAD_BYTES + 1), "over.csv") is False and calls == []
    monkeypatch.undo()
    _assert_kept_and_usable(trained, before)


def test_a_failure_inside_the_parser_never_shows_a_traceback(trained, monkeypatch):
    """Even an unexpected bug in the loader leaves a readable line and the old data in place."""
    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(controller_module, "load_csv", broken)
    before = _snapshot(trained)
    assert trained.load_upload(b"time,a\n", "odd.csv") is False
    assert trained.state.level == "error"
    assert "Traceback" not in trained.state.message
    monkeypatch.undo()
    _assert_kept_and_usable(trained, before)
