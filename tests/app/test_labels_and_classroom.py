"""Labels in the dashboard (live precision / recall / F1) and classroom mode, without a browser.

Drives the Dashboard's AppState, Controller and views directly: the metrics against a hand
count, their live update with the threshold, the ground truth shown and hidden by the switch
(the label band's data and the metrics widget), the teacher's code, the classroom preset and
the command line flags that reach the app notebook.
"""

import statistics
import time
from unittest import mock

import nbformat
import numpy as np
import pytest

from msda_widgets import cli, datasets
from msda_widgets.app import dashboard as dashboard_module
from msda_widgets.app.controller import Controller
from msda_widgets.app.dashboard import CLASSROOM_SETTINGS, Dashboard
from msda_widgets.app.metrics_view import metrics_html

FAST = dict(epochs=2, batch_size=128, lookback=8, conv_channels=(8,), dense_units=8, num_threads=1, seed=0)


@pytest.fixture(scope="module")
def small():
    return datasets.make_sensors(n_steps=1500, n_sensors=4, anomalies=4, seed=3)


def _train(dash):
    assert dash.controller.train()
    assert dash.controller.wait(120)
    assert dash.state.task == "finished", dash.state.message
    return dash


@pytest.fixture(scope="module")
def trained(small):
    """One trained dashboard with labels (not classroom): tests set the threshold they need."""
    return _train(Dashboard(small, warm_up=False, **FAST))


@pytest.fixture(scope="module")
def classroom_trained(small):
    return _train(Dashboard(small, classroom=True, warm_up=False, **FAST))


def _band_rows(dash):
    band = dash.timeline.label_band
    return len(band.x)


# -- metrics ------------------------------------------------------------------------------------

def test_metrics_match_a_hand_count_over_the_scored_rows(trained, small):
    c, s = trained.controller, trained.state
    scores = s.results.scores
    threshold = float(np.nanquantile(scores, 0.9))
    c.set_threshold("fixed", threshold)
    assert s.threshold == threshold
    scored = np.isfinite(scores)
    labels = small.labels.to_numpy()          # the demo's index is sorted: prepared order = table order
    flags = scored & (np.nan_to_num(scores, nan=-np.inf) > threshold)
    tp = int(np.sum(flags & labels))
    fp = int(np.sum(flags & ~labels))
    fn = int(np.sum(~flags & labels & scored))
    tn = int(np.sum(~flags & ~labels & scored))
    m = s.metrics
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (tp, fp, fn, tn)
    assert tp > 0 and fp > 0 and fn > 0       # a threshold that makes every count matter
    assert m["scored"] == int(scored.sum()) == 1500 - 8  # the first `lookback` rows have no score
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    text = trained.panel.metrics.numbers.value
    assert f"F1 <b>{m['f1']:.2f}</b>" in text and f"TP {tp:,} · FP {fp:,} · FN {fn:,}" in text


def test_metrics_follow_the_threshold_live(trained):
    c, s, view = trained.controller, trained.state, trained.panel.metrics
    c.set_threshold("quantile", 0.99)
    seen = mock.Mock()
    s.observe(seen, names="metrics")
    try:
        strict = dict(s.metrics)
        c.set_threshold("quantile", 0.8)
        assert seen.call_count == 1               # one replacement per threshold change
        loose = dict(s.metrics)
        assert loose["tp"] + loose["fp"] == s.n_anomalies
        assert loose["recall"] > strict["recall"] and loose["tp"] > strict["tp"]
        assert f"F1 <b>{loose['f1']:.2f}</b>" in view.numbers.value
        # the histogram's "set threshold" pick goes through the same path
        c.set_threshold("fixed", float(np.nanmax(s.results.scores)) + 1.0)
        assert seen.call_count == 2
        assert s.metrics["tp"] == s.metrics["fp"] == 0 and np.isnan(s.metrics["precision"])
        assert "precision <b>—</b>" in view.numbers.value  # 0/0 is not shown as a number
    finally:
        s.unobserve(seen, names="metrics")


def test_no_labels_no_metrics_and_no_panel(small):
    dash = Dashboard(small.data, warm_up=False, **FAST)   # the sensors only, no label column
    assert dash.state.label_column is None and dash.state.series.labels is None
    _train(dash)
    assert dash.state.metrics == {}
    assert dash.panel.metrics.widget.layout.display == "none" and dash.panel.metrics.numbers.value == ""
    assert _band_rows(dash) == 0 and not dash.timeline.label_band.visible


def test_choosing_no_label_column_clears_the_metrics(small):
    dash = _train(Dashboard(small, warm_up=False, **FAST))
    assert dash.state.metrics and dash.state.metrics["scored"] == 1500 - 8
    dash.controller.set_label_column(None)
    assert dash.state.series.labels is None and dash.state.metrics == {}
    assert not dash.timeline.label_band.visible


def test_metrics_update_is_fast_on_30k_rows():
    data = datasets.make_sensors(n_steps=30_000, n_sensors=4, anomalies=12, seed=1)
    c = Controller(settings={**FAST, "epochs": 1, "batch_size": 1024})
    assert c.load(data)
    assert c.train() and c.wait(120) and c.state.task == "finished", c.state.message
    assert c.state.metrics["scored"] == 30_000 - 8
    times = []
    for _ in range(15):
        t = time.perf_counter()
        c._update_metrics()
        times.append(time.perf_counter() - t)
    assert statistics.median(times) < 0.02, times  # a few ms in practice; threshold drags stay interactive


# -- showing and hiding the ground truth ----------------------------------------------------------

def test_classroom_hides_the_truth_until_the_switch_shows_it(classroom_trained):
    dash = classroom_trained
    s, c, view, panel = dash.state, dash.controller, dash.panel.metrics, dash.panel
    c.set_reveal_truth(False)
    assert s.classroom and not s.reveal_truth and not s.teacher_code_required
    # hidden = absent from the page: no band data, no numbers in the HTML
    assert _band_rows(dash) == 0 and not dash.timeline.label_band.visible
    assert "precision" not in view.numbers.value and "Classroom mode" in view.numbers.value
    assert s.metrics  # graded in the kernel, only not shown
    assert view.code.layout.display == "none"   # no code asked: a plain switch
    # the label column cannot be dropped (it would turn into a sensor line anyone could read)
    assert panel.label_column.disabled
    c.set_label_column(None)
    assert s.label_column == "anomaly" and s.level == "warning" and "classroom" in s.message

    view.reveal.value = True                     # the switch, as a click would set it
    assert s.reveal_truth and view.reveal.description == "hide answers"
    spans = int(np.sum(np.diff(np.r_[0, s.series.labels.astype(int)]) == 1))
    assert dash.timeline.label_band.visible and _band_rows(dash) == 4 * spans > 0
    assert f"F1 <b>{s.metrics['f1']:.2f}</b>" in view.numbers.value
    assert not panel.label_column.disabled

    view.reveal.value = False
    assert not s.reveal_truth and _band_rows(dash) == 0 and "precision" not in view.numbers.value


def test_outside_classroom_the_truth_is_shown_and_can_be_hidden(trained):
    dash = trained
    s, view = dash.state, dash.panel.metrics
    assert not s.classroom and s.reveal_truth and _band_rows(dash) > 0
    assert view.widget.layout.display is None and "precision" in view.numbers.value
    view.reveal.value = False
    try:
        assert not s.reveal_truth and _band_rows(dash) == 0
        assert view.numbers.value.count("hidden") == 1 and "precision" not in view.numbers.value
        assert not dash.panel.label_column.disabled  # only classroom mode locks the label column
    finally:
        view.reveal.value = True
    assert s.reveal_truth and _band_rows(dash) > 0


def test_teacher_code_is_asked_and_a_wrong_one_is_refused(small):
    dash = Dashboard(small, classroom=True, teacher_code="owl-42", warm_up=False, **FAST)
    s, c, view = dash.state, dash.controller, dash.panel.metrics
    assert s.teacher_code_required and not s.reveal_truth
    assert view.code.layout.display is None      # the password box is there
    assert "owl-42" not in repr(s.trait_values())  # the code is not in the state the views render

    view.code.value = "cat"
    view.reveal.value = True
    assert not s.reveal_truth and view.reveal.value is False   # the switch goes back off
    assert s.level == "warning" and s.message.startswith("That is not the teacher's code")
    assert view.code.value == ""                  # a typed code is not kept in the page
    assert _band_rows(dash) == 0
    assert c.set_reveal_truth(True) is False and not s.reveal_truth  # no code at all

    view.code.value = "owl-42"
    view.reveal.value = True
    assert s.reveal_truth and _band_rows(dash) > 0 and view.code.layout.display == "none"
    assert view.code.value == ""
    assert c.set_reveal_truth(False) is True and not s.reveal_truth  # hiding needs no code


def test_wrong_codes_lock_the_switch_for_a_while(small):
    dash = Dashboard(small, classroom=True, teacher_code="owl-42", warm_up=False, **FAST)
    s, c = dash.state, dash.controller
    now = [1000.0]
    c._clock = lambda: now[0]
    for _ in range(c.CODE_TRIES - 1):
        assert c.set_reveal_truth(True, "guess") is False
    assert "locked" not in s.message
    assert c.set_reveal_truth(True, "guess") is False        # the fifth wrong code in a row
    assert "locked for 60 s" in s.message
    assert c.set_reveal_truth(True, "owl-42") is False and not s.reveal_truth  # even the right code waits
    assert "locked for 60 s more" in s.message
    now[0] += 30
    assert c.set_reveal_truth(True, "owl-42") is False and "30 s more" in s.message
    now[0] += 31
    assert c.set_reveal_truth(True, "owl-42") is True and s.reveal_truth
    # a right code resets the count: four more wrong ones do not lock
    c.set_reveal_truth(False)
    for _ in range(c.CODE_TRIES - 1):
        c.set_reveal_truth(True, "guess")
    assert "locked" not in s.message


def test_teacher_code_needs_classroom_and_cannot_be_empty(small):
    with pytest.raises(ValueError, match="classroom=True"):
        Dashboard(small, teacher_code="owl", warm_up=False)
    with pytest.raises(ValueError, match="empty"):
        Dashboard(small, classroom=True, teacher_code="  ", warm_up=False)


# -- the classroom preset -------------------------------------------------------------------------

def test_classroom_preset_values_and_overrides():
    dash = Dashboard(classroom=True, warm_up=False)
    s = dash.state
    def same(a, b):  # settings hold tuples as lists (DetectorConfig.flat)
        return (list(a) == list(b)) if isinstance(b, tuple) else a == b

    for key, value in CLASSROOM_SETTINGS.items():
        assert same(s.settings[key], value), key
    assert s.settings["num_threads"] == 1 and s.settings["seed"] == 0 and s.settings["model"] == "deepcnn"
    assert list(s.settings["conv_channels"]) == [16, 16] and s.settings["epochs"] <= 15
    # the built-in labelled data, with its label column found
    assert s.data_name == datasets.demo().name and s.label_column == "anomaly"
    assert s.series.labels.sum() == datasets.demo().labels.sum()
    # the panel shows the preset, and settings given by the caller win
    assert dash.panel.epochs.value == CLASSROOM_SETTINGS["epochs"]
    assert Dashboard(classroom=True, warm_up=False, epochs=3).state.settings["epochs"] == 3
    assert list(Dashboard(warm_up=False).state.settings["conv_channels"]) != [16, 16]  # not the default


def test_classroom_preset_trains_fast_and_the_same_every_time():
    runs = []
    for _ in range(2):
        dash = _train(Dashboard(classroom=True, warm_up=False))
        runs.append((dash.state.threshold, dict(dash.state.metrics), dash.state.detector.history_.seconds))
    (t1, m1, s1), (t2, m2, s2) = runs
    assert t1 == t2 and m1 == m2                 # fixed seed: the same threshold and grades
    assert max(s1, s2) < 15                      # ~0.5 s on one thread; generous for a busy machine
    # the exercise has something to find: a lower threshold than the default catches more
    assert m1["precision"] > 0.8 and m1["recall"] < 0.5


# -- the command line and the app notebook ----------------------------------------------------------

def test_voila_command_carries_classroom_mode(monkeypatch):
    cmd, env = cli.voila_command(None, 8866, "light", classroom=True, teacher_code="s3cret-code")
    assert env["MSDA_WIDGETS_CLASSROOM"] == "1" and env["MSDA_WIDGETS_TEACHER_CODE"] == "s3cret-code"
    assert "s3cret-code" not in " ".join(cmd)  # Voila's command line does not show it
    monkeypatch.setenv("MSDA_WIDGETS_TEACHER_CODE", "from-env")
    monkeypatch.setenv("MSDA_WIDGETS_CLASSROOM", "1")
    _, env = cli.voila_command(None, 8866, "light", classroom=True)
    assert env["MSDA_WIDGETS_TEACHER_CODE"] == "from-env"   # kept out of the process list
    _, env = cli.voila_command(None, 8866, "light")
    assert "MSDA_WIDGETS_CLASSROOM" not in env and "MSDA_WIDGETS_TEACHER_CODE" not in env


def test_cli_flags_reach_the_environment(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MSDA_WIDGETS_TEACHER_CODE", raising=False)
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    assert cli.main(["demo", "--classroom", "--teacher-code", "owl", "--port", "9001"]) == 0
    cmd, env = calls[-1]
    assert "--port=9001" in cmd and env["MSDA_WIDGETS_CLASSROOM"] == "1"
    assert env["MSDA_WIDGETS_TEACHER_CODE"] == "owl" and "MSDA_WIDGETS_DATA" not in env
    data = tmp_path / "d.csv"
    data.write_text("t,a\n2024-01-01,1\n")
    assert cli.main(["serve", str(data), "--classroom"]) == 0
    cmd, env = calls[-1]
    assert env["MSDA_WIDGETS_CLASSROOM"] == "1" and "MSDA_WIDGETS_TEACHER_CODE" not in env
    assert env["MSDA_WIDGETS_DATA"] == str(data.resolve())
    assert cli.main(["demo"]) == 0 and "MSDA_WIDGETS_CLASSROOM" not in calls[-1][1]
    n = len(calls)
    assert cli.main(["demo", "--teacher-code", "owl"]) == 2 and len(calls) == n
    assert "add --classroom" in capsys.readouterr().err
    monkeypatch.setenv("MSDA_WIDGETS_TEACHER_CODE", "   ")   # blank: every visitor's page would fail
    assert cli.main(["demo", "--classroom"]) == 2 and len(calls) == n
    assert "MSDA_WIDGETS_TEACHER_CODE is set but blank" in capsys.readouterr().err


@pytest.mark.parametrize("env, expected", [
    ({"MSDA_WIDGETS_CLASSROOM": "1", "MSDA_WIDGETS_TEACHER_CODE": "owl"}, (True, "owl")),
    ({"MSDA_WIDGETS_CLASSROOM": "1"}, (True, None)),
    ({"MSDA_WIDGETS_TEACHER_CODE": "owl"}, (False, None)),   # a stray code alone changes nothing
    ({}, (False, None)),
])
def test_app_notebook_reads_the_classroom_variables(monkeypatch, env, expected):
    for name in ("MSDA_WIDGETS_CLASSROOM", "MSDA_WIDGETS_TEACHER_CODE", "MSDA_WIDGETS_DATA",
                 "MSDA_WIDGETS_SETTINGS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr(dashboard_module, "Dashboard", lambda *a, **kw: seen.append(kw))
    source = nbformat.read(cli.APP_NOTEBOOK, as_version=4).cells[0].source
    exec(compile(source, str(cli.APP_NOTEBOOK), "exec"), {})
    assert (seen[0]["classroom"], seen[0]["teacher_code"]) == expected


def test_metrics_html_formats_nan_as_a_dash():
    text = metrics_html({"precision": float("nan"), "recall": 0.5, "f1": 0.25, "tp": 1, "fp": 0, "fn": 1,
                         "scored": 1234})
    assert "precision <b>—</b>" in text and "recall <b>0.50</b>" in text and "of 1,234 scored rows" in text


def test_hidden_labels_never_become_a_sensor_line(small):
    dash = Dashboard(small, classroom=True, warm_up=False, **FAST)
    s, c = dash.state, dash.controller
    label = s.label_column
    assert label and label not in s.series.sensors
    assert c.set_sensors((label,)) is None and label not in s.series.sensors      # refused while hidden
    assert s.level == "warning" and "label column stays out of the sensors" in s.message
    # the teacher shows the answers, drops the label column (it becomes a sensor), then hides them
    assert c.set_reveal_truth(True)
    c.set_label_column(None)
    assert label in s.series.sensors
    assert c.set_reveal_truth(False)
    assert s.label_column == label and label not in s.series.sensors and not s.reveal_truth
