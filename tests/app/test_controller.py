"""The controller drives the engine and is the only writer of AppState (no widgets needed)."""

import gc
import threading
import time
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from msda_widgets import datasets
from msda_widgets.app.controller import Controller
from msda_widgets.app.state import AppState

FAST = dict(epochs=3, batch_size=128, lookback=8)


@pytest.fixture(scope="module")
def demo_small():
    return datasets.make_sensors(n_steps=1500, n_sensors=4, anomalies=4, seed=3)


@pytest.fixture
def ctl(demo_small):
    c = Controller(settings=FAST)
    assert c.load(demo_small)
    return c


@pytest.fixture
def trained(ctl):
    assert ctl.train()
    assert ctl.wait(120)
    assert ctl.state.task == "finished", ctl.state.message
    return ctl


def test_load_demo_publishes_the_series(ctl, demo_small):
    s = ctl.state
    assert s.series.values.shape == (1500, 4)
    assert s.series.sensors == tuple(demo_small.data.columns)
    assert s.label_column == "anomaly"  # the built-in data knows its ground truth
    np.testing.assert_array_equal(s.series.labels, demo_small.labels.to_numpy())
    assert s.level == "success" and "1,500 rows" in s.message
    assert s.task == "idle" and s.results is None


def test_default_load_is_the_built_in_demo():
    c = Controller()
    assert c.load()
    assert c.state.series.n_rows == len(datasets.demo().data)


def test_train_streams_loss_and_publishes_results(ctl):
    states = []
    ctl.state.observe(lambda ch: states.append(ch["new"]), names="task")
    histories = []
    ctl.state.observe(lambda ch: histories.append(ch["new"]), names="history")
    assert ctl.train()
    assert ctl.wait(120)
    s = ctl.state
    assert states[0] == "running" and states[-1] == "finished"
    assert len(s.history) == 3 and all(np.isfinite(h[1]) for h in s.history)
    assert any(len(h) == 1 for h in histories)  # the first epoch is published on its own, live
    r = s.results
    assert r.scores.shape == (1500,) and np.isnan(r.scores[:8]).all() and np.isfinite(r.scores[8:]).all()
    assert s.n_anomalies == int(np.nansum(r.scores > s.threshold)) == len(s.anomalies)
    assert list(s.anomalies.columns) == ["position", "when", "score", "top_sensors"]
    assert s.anomalies["score"].is_monotonic_decreasing
    assert s.threshold == pytest.approx(s.detector.threshold_)
    assert s.progress["fraction"] == 1.0


def test_progress_updates_are_throttled(demo_small):
    c = Controller(settings={**FAST, "epochs": 4, "batch_size": 16}, publish_interval=0.2)
    c.load(demo_small)
    updates = []
    c.state.observe(lambda ch: updates.append(time.perf_counter()), names="progress")
    c.train()
    c.wait(120)
    batches = 4 * int(np.ceil(1500 * 0.9 / 16))
    gaps = np.diff(updates)
    # at most ≤ 1 update per interval, except the forced ones: the start, the first epoch, the end
    assert (gaps < 0.2 * 0.95).sum() <= 3, gaps
    assert len(updates) < batches


def test_threshold_move_recolours_without_retraining(trained):
    s = trained.state
    det = s.detector
    n_default = s.n_anomalies
    trained.set_threshold("quantile", 0.9)
    assert s.detector is det and s.n_anomalies > n_default
    assert s.n_anomalies == int(np.nansum(s.results.scores > s.threshold))
    counts = []
    s.observe(lambda ch: counts.append(ch["new"]), names="n_anomalies")
    trained.set_threshold("fixed", float(np.nanmax(s.results.scores)) + 1)
    assert s.n_anomalies == 0 and counts == [0] and len(s.anomalies) == 0
    assert s.settings["threshold"] == "fixed"


def test_select_next_previous_steps_in_time_order(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.95)
    positions = np.flatnonzero(s.flags)
    with mock.patch.object(trained, "_explain") as explain:
        trained.select_next()
        assert s.selected == positions[0]
        trained.select_next()
        assert s.selected == positions[1]
        trained.select_previous()
        assert s.selected == positions[0]
        trained.select_previous()  # wraps around
        assert s.selected == positions[-1]
        assert explain.call_count == 4


def test_select_unscored_row_is_a_message_not_an_error(trained):
    trained.select(2)
    assert trained.state.selected == -1 and trained.state.level == "warning"
    assert "no score" in trained.state.message


def test_stop_keeps_a_usable_model(demo_small):
    c = Controller(settings={**FAST, "epochs": 500, "batch_size": 8, "patience": 0})
    c.load(demo_small)
    c.train()
    deadline = time.time() + 60
    while len(c.state.history) < 1 and time.time() < deadline:
        time.sleep(0.02)
    c.stop()
    assert c.wait(30)
    s = c.state
    assert s.task == "cancelled" and s.level == "warning" and "stopped by you" in s.message
    assert s.results is not None and np.isfinite(s.results.scores[8:]).all()


def test_train_twice_starts_one_run(demo_small):
    c = Controller(settings={**FAST, "epochs": 200, "batch_size": 8, "patience": 0})
    c.load(demo_small)
    assert c.train() is True
    assert c.train() is False
    assert "already running" in c.state.message
    threads = [t for t in threading.enumerate() if t.name.startswith("msda-train")]
    assert len(threads) == 1
    c.stop()
    c.wait(30)


def test_bad_upload_keeps_previous_data(ctl):
    before = ctl.state.series
    assert ctl.load_upload(b"not,a\nnumber,here\n", "broken.csv") is False
    assert ctl.state.level == "error" and "broken.csv" in ctl.state.message
    assert ctl.state.series is before
    assert ctl.load_upload(b"x" * (ctl.MAX_UPLOAD_BYTES + 1), "huge.csv") is False
    assert "limited to" in ctl.state.message and ctl.state.series is before
    assert ctl.load_upload(b"", "empty.csv") is False


def test_good_upload_switches_data(ctl):
    csv = "time,a,b\n" + "\n".join(f"2024-01-01 {h:02d}:00,{h % 5},{(h * 7) % 3}" for h in range(24))
    assert ctl.load_upload(csv.encode(), "mine.csv")
    assert ctl.state.data_name == "mine.csv" and ctl.state.series.sensors == ("a", "b")
    assert ctl.state.time_column == "time" and ctl.state.label_column is None


def test_training_error_is_reported_and_results_kept(trained):
    before = trained.state.results
    trained.update_settings(learning_rate=1e9)  # the loss explodes in the first epoch
    trained.train()
    trained.wait(60)
    s = trained.state
    assert s.task == "error" and s.level == "error"
    assert "lower the learning rate" in s.message and "previous results are kept" in s.message
    assert s.results is before


def test_invalid_settings_are_refused_with_a_message(ctl):
    before = dict(ctl.state.settings)
    assert ctl.update_settings(lookback=-3) is False
    assert ctl.state.level == "error" and "lookback" in ctl.state.message
    assert ctl.state.settings == before


def test_data_settings_rebuild_the_view(ctl):
    ctl.set_sensors(["temperature", "flow"])
    assert ctl.state.series.sensors == ("temperature", "flow")
    assert ctl.update_settings(sensors=("nope",)) is False
    assert ctl.state.series.sensors == ("temperature", "flow")


def test_export_csv_has_settings_and_rows(trained):
    text = trained.export_csv().decode()
    assert text.startswith("# msda_widgets")
    assert '"lookback": 8' in text
    body = [l for l in text.splitlines() if not l.startswith("#")]
    assert body[0] == "when,score,top_sensors"
    assert len(body) - 1 == trained.state.n_anomalies


def test_brush_and_view_range(ctl):
    ctl.set_brush(0.5, 0.2)
    assert ctl.state.brush == (0.2, 0.5)
    ctl.set_brush()
    assert ctl.state.brush is None
    ctl.set_view_range(1, 5)
    assert ctl.state.view_range == (1, 5)


def test_unexpected_exception_never_escapes(ctl):
    with mock.patch.object(ctl, "_to_frame", side_effect=ZeroDivisionError("boom")):
        assert ctl.load("whatever") is False
    assert ctl.state.level == "error" and "ZeroDivisionError" in ctl.state.message


def test_final_progress_is_published(trained):
    p = trained.state.progress
    assert p["epoch"] == len(trained.state.history) and p["fraction"] == 1.0 and p["eta"] == 0.0


def test_data_setting_change_clears_stale_results(trained):
    assert trained.state.results is not None
    trained.set_sensors(["temperature", "pressure"])
    s = trained.state
    assert s.results is None and s.flags is None and s.selected == -1 and s.detector is None
    assert "Train again" in s.message


def test_no_label_column_means_none(ctl):
    ctl.set_label_column(None)
    assert ctl.state.label_column is None and ctl.state.series.labels is None
    assert "anomaly" in ctl.state.series.sensors  # the user said it is not a label: it is data now
    ctl.set_label_column("anomaly")
    assert ctl.state.label_column == "anomaly" and ctl.state.series.labels is not None


def test_guarded_methods_that_answer_true_or_false_answer_false_on_an_unexpected_error(monkeypatch):
    from msda_widgets.app import controller as module
    for name in module._BOOL_METHODS:
        assert callable(getattr(Controller, name)), name   # no stale names in the set
    c = Controller(warm_up=False)
    c.load(datasets.demo())
    monkeypatch.setattr(module, "DetectorConfig", None)      # any update_settings now fails inside
    assert c.update_settings(epochs=3) is False
    assert c.state.level == "error" and c.state.message.startswith("Something went wrong")
