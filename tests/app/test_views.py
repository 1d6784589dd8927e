"""The widget views against a real Controller and AppState: what the widgets hold, what they call.

No browser: the views are driven through the state (via the controller) and through the same
handlers the front end triggers (element clicks, scale min/max, selector values, button clicks).
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import textwrap
from unittest import mock

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest

from msda_widgets import datasets
from msda_widgets.app.charts import MAX_POINTS, LossCurve, ScoreHistogram, Timeline, downsample
from msda_widgets.app.controller import Controller
from msda_widgets.app.explain_view import HEATMAP_SENSORS, ExplainView
from msda_widgets.app.panel import ControlPanel
from msda_widgets.app.table import AnomalyTable
from msda_widgets.engine.thresholds import THRESHOLDS

FAST = dict(epochs=2, batch_size=128, lookback=8)


@pytest.fixture(scope="module")
def demo_small():
    return datasets.make_sensors(n_steps=1500, n_sensors=4, anomalies=4, seed=3)


@pytest.fixture(scope="module")
def trained(demo_small):
    c = Controller(settings=FAST)
    assert c.load(demo_small)
    assert c.train()
    assert c.wait(120)
    assert c.state.task == "finished", c.state.message
    assert c.state.n_anomalies > 3
    return c


@pytest.fixture
def loaded(demo_small):
    c = Controller(settings=FAST)
    assert c.load(demo_small)
    return c


def _visible(w: widgets.Widget) -> bool:
    return w.layout.display != "none"


def _walk(w):
    yield w
    for child in getattr(w, "children", ()) or ():
        yield from _walk(child)


# --------------------------------------------------------------------------------------------- timeline

def test_timeline_draws_each_sensor_scaled_to_unit_range(trained):
    s = trained.state
    tl = Timeline(s, trained)
    n, k = s.series.values.shape
    lines = tl.sensor_lines
    assert lines.x.shape == lines.y.shape == (k, n)  # 1,500 rows: nothing to thin
    assert lines.x.dtype.kind == "M" and isinstance(tl.x_scale, bq.DateScale)
    np.testing.assert_allclose(lines.y.min(axis=1), 0.0)
    np.testing.assert_allclose(lines.y.max(axis=1), 1.0)
    raw = s.series.values[:, 0]
    np.testing.assert_allclose(lines.y[0], (raw - raw.min()) / (raw.max() - raw.min()))
    assert lines.labels == list(s.series.sensors)
    assert len(set(lines.colors)) == k
    # the score has its own scale and a right-hand axis; NaN (unscored) rows are not drawn
    assert tl.score_line.scales["y"] is tl.y_score is tl.score_axis.scale and tl.score_axis.side == "right"
    assert len(tl.score_line.x) == int(np.isfinite(s.results.scores).sum())
    # the true labels are shaded
    assert tl.label_band.visible and len(tl.label_band.x) == 4 * len(tl.label_band.x) // 4 > 0


def test_flagged_scatter_matches_the_state_and_follows_the_threshold(trained):
    s = trained.state
    tl = Timeline(s, trained)
    for q in (0.9, 0.97):
        trained.set_threshold("quantile", q)
        assert len(tl.flagged.x) == len(tl.flagged.y) == s.n_anomalies
        np.testing.assert_array_equal(tl.flagged_positions, np.flatnonzero(s.flags))
        np.testing.assert_allclose(tl.flagged.y, s.results.scores[tl.flagged_positions])
        np.testing.assert_allclose(tl.threshold_line.y, [s.threshold, s.threshold])
        assert tl.flagged.interactions.get("click") == "tooltip"  # never "select" (breaks bqplot 0.13.1)


def test_scatter_click_selects_the_prepared_position(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.95)
    tl = Timeline(s, trained)
    with mock.patch.object(trained, "select") as select:
        tl._on_point_click(tl.flagged, {"data": {"index": 2}})
        select.assert_called_once_with(int(tl.flagged_positions[2]))
        # the path the browser takes: a custom "element_click" message on the mark
        tl.flagged._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 0}})
        assert select.call_args_list[-1] == mock.call(int(tl.flagged_positions[0]))
        tl._on_point_click(tl.flagged, {"data": {"index": 10 ** 6}})  # stale index: ignored
        assert select.call_count == 2


def test_selected_point_is_highlighted(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.95)
    tl = Timeline(s, trained)
    target = int(tl.flagged_positions[3])
    trained.select(target)
    assert s.selected == target, s.message
    np.testing.assert_array_equal(tl.flagged.selected, [3])
    assert tl.flagged.selected_style and tl.flagged.unselected_style
    trained.set_threshold("quantile", 0.95)  # a redraw keeps the highlight
    np.testing.assert_array_equal(tl.flagged.selected, [3])


def test_only_the_highest_scored_flagged_points_are_drawn_beyond_the_cap(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.9)
    tl = Timeline(s, trained, max_flagged=5)
    assert len(tl.flagged.x) == 5 and tl.flagged_in_view == s.n_anomalies > 5
    top5 = np.sort(np.sort(s.results.scores[np.flatnonzero(s.flags)])[-5:])
    np.testing.assert_allclose(np.sort(tl.flagged.y), top5)
    assert "highest-scored" in tl.caption.value


def test_brush_highlights_rows_in_the_score_range(trained):
    s = trained.state
    tl = Timeline(s, trained)
    lo, hi = np.nanquantile(s.results.scores, [0.5, 0.6])
    trained.set_brush(lo, hi)
    expected = np.flatnonzero((s.results.scores >= lo) & (s.results.scores <= hi))
    np.testing.assert_array_equal(tl.brushed_positions, expected)
    assert len(tl.brushed.x) == len(expected)
    trained.set_brush()
    assert len(tl.brushed.x) == 0


def test_downsampling_and_resampling_on_view_range():
    n = 100_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(np.cumsum(rng.standard_normal((n, 3)), axis=0), columns=["a", "b", "c"],
                         index=pd.date_range("2024-01-01", periods=n, freq="min", name="time"))
    c = Controller(settings=FAST)
    assert c.load(frame), c.state.message
    tl = Timeline(c.state, c, debounce_s=0)
    assert tl.sensor_lines.x.shape == (3, MAX_POINTS)
    # the shape survives the thinning: each line still spans (nearly) its whole range
    assert np.all(tl.sensor_lines.y.min(axis=1) < 0.01) and np.all(tl.sensor_lines.y.max(axis=1) > 0.99)
    before = tl.resamples
    with mock.patch.object(c, "set_view_range", wraps=c.set_view_range) as svr:
        c.set_view_range(frame.index[10_000], frame.index[13_000])
        assert svr.call_count == 1  # the x scale follows the state without calling back
    assert tl.resamples == before + 1
    x = tl.sensor_lines.x
    assert x.shape[1] <= MAX_POINTS
    lo, hi = frame.index[9_999].to_datetime64(), frame.index[13_001].to_datetime64()
    assert x.min() >= lo and x.max() <= hi
    assert tl.date_scale.min == frame.index[10_000].to_pydatetime()
    # pan/zoom in the browser sets the scale's min/max -> the controller's view range -> re-sampled
    tl.date_scale.max = frame.index[12_000].to_pydatetime()
    assert c.state.view_range[1] == frame.index[12_000]
    assert tl.rows == (9_999, 12_002)
    assert tl.sensor_lines.x.shape == (3, MAX_POINTS)  # 2,003 rows -> 2,000 points
    c.set_view_range(None, None)
    assert tl.rows == (0, n) and tl.date_scale.min is None


def test_pan_zoom_is_debounced(loaded):
    s = loaded.state
    tl = Timeline(s, loaded, debounce_s=30)  # long: only flush() runs it
    idx = s.series.index
    with mock.patch.object(loaded, "set_view_range") as svr:
        for i in range(5):
            tl.date_scale.min = idx[100 + i].to_pydatetime()
            tl.date_scale.max = idx[400 + i].to_pydatetime()
        assert svr.call_count == 0 and tl._push_range.pending
        tl._push_range.flush()
        svr.assert_called_once_with(idx[104], idx[404])


def test_downsample_keeps_short_series_and_thins_long_ones():
    y = np.sin(np.arange(10_000) / 50.0) + 0.05 * np.random.default_rng(0).standard_normal(10_000)
    y[7_321] = 5.0  # a one-row spike must stay visible
    np.testing.assert_array_equal(downsample(None, y[:500], 2000), np.arange(500))
    for x in (None, np.arange(10_000, dtype=np.int64) * 10 ** 9):
        idx = downsample(x, y, 200)
        assert len(idx) == 200 and np.all(np.diff(idx) > 0) and 7_321 in idx


def test_row_order_data_uses_a_linear_scale():
    frame = pd.DataFrame({"a": np.sin(np.arange(300) / 7.0), "b": np.cos(np.arange(300) / 5.0)})
    c = Controller(settings=FAST)
    assert c.load(frame), c.state.message
    tl = Timeline(c.state, c)
    assert isinstance(tl.x_scale, bq.LinearScale) and tl.sensor_lines.scales["x"] is tl.linear_scale
    assert tl.panzoom.scales["x"] == [tl.linear_scale] and tl.sensor_lines.x.dtype.kind == "f"


# --------------------------------------------------------------------------------- loss curve / histogram

def test_loss_curve_grows_with_the_history(demo_small):
    c = Controller(settings={**FAST, "epochs": 3})
    assert c.load(demo_small)
    lc = LossCurve(c.state)
    assert len(lc.train_line.x) == 0
    lengths = []
    lc.train_line.observe(lambda ch: lengths.append(len(ch["new"])), names="x")
    assert c.train() and c.wait(120)
    hist = np.array(c.state.history, dtype=float)
    np.testing.assert_array_equal(lc.train_line.x, [1, 2, 3])
    np.testing.assert_allclose(lc.train_line.y, hist[:, 1])
    np.testing.assert_allclose(lc.val_line.y, hist[:, 2])
    assert lengths == sorted(lengths) and lengths[-1] == 3 and lengths[0] < 3  # it grew live


def test_histogram_threshold_line_and_colours(trained):
    s = trained.state
    h = ScoreHistogram(s, trained, debounce_s=0)
    counts, edges = s.results.histogram
    np.testing.assert_array_equal(h.bars.y, counts)
    for q in (0.9, 0.99):
        trained.set_threshold("quantile", q)
        np.testing.assert_allclose(h.threshold_line.x, [s.threshold, s.threshold])
        np.testing.assert_array_equal(h.bars.color, (h.centres > s.threshold).astype(float))


def test_histogram_threshold_mode_sets_a_fixed_threshold(trained):
    s = trained.state
    h = ScoreHistogram(s, trained, debounce_s=30)
    h.mode.value = "threshold"
    assert h.figure.interaction is h.picker
    value = float(np.nanquantile(s.results.scores, 0.8))
    with mock.patch.object(trained, "set_threshold", wraps=trained.set_threshold) as st:
        h.picker.selected = np.array([value])
        # the bars recolour at once; the controller hears of it once the pointer rests
        np.testing.assert_array_equal(h.bars.color, (h.centres > value).astype(float))
        np.testing.assert_allclose(h.threshold_line.x, [value, value])
        assert st.call_count == 0
        h._send_threshold.flush()
        st.assert_called_once_with("fixed", value)
    assert s.threshold_method == "fixed" and s.threshold == pytest.approx(value)
    assert s.n_anomalies == int(np.nansum(s.results.scores > value))
    h.mode.value = "brush"
    assert h.figure.interaction is h.brush


def test_histogram_brush_sends_the_range_when_the_drag_ends(trained):
    h = ScoreHistogram(trained.state, trained)
    with mock.patch.object(trained, "set_brush") as sb:
        h.brush.brushing = True
        h.brush.selected = np.array([0.2, 0.5])
        h.brush.selected = np.array([0.2, 0.6])
        assert sb.call_count == 0
        h.brush.brushing = False
        sb.assert_called_once_with(0.2, 0.6)
    trained.set_brush(0.2, 0.6)
    with mock.patch.object(trained, "set_brush", wraps=trained.set_brush) as sb:
        h.brush.selected = None  # a click beside the brush clears it
        sb.assert_called_once_with()
    assert trained.state.brush is None


# ---------------------------------------------------------------------------------------- explanation

def test_explain_view_placeholder_before_any_selection(loaded):
    ev = ExplainView(loaded.state, loaded)
    assert _visible(ev.placeholder) and not _visible(ev.tabs)
    assert "Click a red point" in ev.placeholder.value
    assert ev.prev_button.disabled and ev.next_button.disabled


def test_explain_view_shows_the_explanation_after_select(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.95)
    ev = ExplainView(s, trained)
    target = int(np.flatnonzero(s.flags)[0])
    trained.select(target)
    e = s.explanation
    assert e is not None, s.message
    assert not _visible(ev.placeholder) and _visible(ev.tabs)
    by = e.by_sensor
    np.testing.assert_array_equal(ev.sensor_bars.x, np.array(by.index, dtype=str))
    np.testing.assert_allclose(ev.sensor_bars.y, by.to_numpy())
    np.testing.assert_array_equal(ev.sensor_bars.color, (by.to_numpy() > 0).astype(float))
    assert ev.sensor_bars.orientation == "horizontal"
    k = min(len(e.sensors), HEATMAP_SENSORS)
    assert ev.matrix_map.color.shape == (k, len(e.offsets))
    np.testing.assert_allclose(ev.matrix_map.color[0], e.matrix[by.index[0]].to_numpy())
    assert list(ev.raw_lines.labels) == list(by.index[:3]) and ev.raw_lines.y.shape == (3, len(e.offsets))
    assert f"{e.score:.4g}" in ev.header.value and str(s.series.index[target]) in ev.header.value
    assert list(ev.layer.options) == list(s.activations)
    assert ev.layer_map.color.shape[1] == len(s.activations[ev.layer.value])


def test_explain_view_prev_next_call_the_controller(trained):
    ev = ExplainView(trained.state, trained)
    with mock.patch.object(trained, "select_next") as nxt, mock.patch.object(trained, "select_previous") as prv:
        ev.next_button.click()
        ev.prev_button.click()
        ev.prev_button.click()
    assert nxt.call_count == 1 and prv.call_count == 2


# ----------------------------------------------------------------------------------------------- table

def test_table_lists_anomalies_and_selects(trained):
    s = trained.state
    trained.set_threshold("quantile", 0.97)
    t = AnomalyTable(s, trained)
    assert len(t.rows.options) == s.n_anomalies
    label, pos = t.rows.options[0]
    first = s.anomalies.iloc[0]
    assert pos == first["position"] and f"score {first['score']:.3g}" in label
    assert label.startswith(pd.Timestamp(first["when"]).strftime("%Y-%m-%d %H:%M"))
    assert label.split(" | ")[2] == first["top_sensors"]
    t.sort.value = "time"
    positions = [v for _, v in t.rows.options]
    assert positions == sorted(positions)
    with mock.patch.object(trained, "select") as select:
        t.rows.value = positions[1]
        select.assert_called_once_with(positions[1])
    trained.select(positions[2])
    assert t.rows.value == positions[2]  # follows the state ...
    with mock.patch.object(trained, "select") as select:
        trained.state.observe(lambda ch: None, names="selected")
        t._sync_selected()
        assert select.call_count == 0  # ... without calling back


def test_export_link_holds_the_controller_csv(trained):
    t = AnomalyTable(trained.state, trained)
    t.export_button.click()
    html = t.download.value
    assert 'download="anomalies.csv"' in html and "data:text/csv;base64," in html
    payload = html.split("base64,")[1].split('"')[0]
    assert base64.b64decode(payload) == trained.export_csv()


# ----------------------------------------------------------------------------------------------- panel

CONTROL_TYPES = (widgets.Button, widgets.FileUpload, widgets.Dropdown, widgets.SelectMultiple, widgets.Select,
                 widgets.IntSlider, widgets.FloatSlider, widgets.FloatLogSlider, widgets.Text,
                 widgets.BoundedIntText, widgets.ToggleButtons, widgets.FloatProgress, widgets.IntProgress)


def test_every_control_has_a_tooltip(trained):
    s = trained.state
    roots = [ControlPanel(s, trained).widget, Timeline(s, trained).widget, ScoreHistogram(s, trained).widget,
             ExplainView(s, trained).widget, AnomalyTable(s, trained).widget]
    controls = [w for root in roots for w in _walk(root) if isinstance(w, CONTROL_TYPES)]
    assert len(controls) >= 25
    missing = [f"{type(w).__name__}({getattr(w, 'description', '')!r})" for w in controls
               if not (w.tooltip or "").strip()]
    assert missing == []


def test_panel_defaults_reflect_the_settings(loaded):
    p = ControlPanel(loaded.state, loaded)
    st = loaded.state.settings
    assert p.model.value == st["model"] and p.lookback.value == st["lookback"] == 8
    assert p.hidden_sizes.value == "128,64" and p.batch_size.value == 128
    assert p.sensors.value == loaded.state.series.sensors
    assert p.label_column.value == "anomaly" and p.time_column.value == "auto"
    assert not p.train_button.disabled and p.stop_button.disabled
    assert p.threshold_method.value == st["threshold"]
    m = THRESHOLDS[st["threshold"]]
    assert (p.threshold_param.min, p.threshold_param.max, p.threshold_param.value) == (m.low, m.high, m.default)


def test_panel_sends_settings_with_the_right_types(loaded):
    p = ControlPanel(loaded.state, loaded)
    with mock.patch.object(loaded, "update_settings", wraps=loaded.update_settings) as us:
        p.hidden_sizes.value = "32, 16"
        p.missing_values.value = "-200, -999.5"
        p.lookback.value = 12
        p.learning_rate.value = 1e-2
        p.batch_size.value = 256
        p.model.value = "lstm_ae"
    assert us.call_args_list == [mock.call(hidden_sizes=(32, 16)), mock.call(missing_values=(-200.0, -999.5)),
                                 mock.call(lookback=12), mock.call(learning_rate=1e-2),
                                 mock.call(batch_size=256), mock.call(model="lstm_ae")]
    st = loaded.state.settings
    assert tuple(st["hidden_sizes"]) == (32, 16) and tuple(st["missing_values"]) == (-200.0, -999.5)
    assert p.kernel_size.disabled and not p.hidden_sizes.disabled


def test_panel_state_changes_do_not_echo_back(loaded):
    p = ControlPanel(loaded.state, loaded)
    with mock.patch.object(loaded, "update_settings", wraps=loaded.update_settings) as us, \
            mock.patch.object(loaded, "set_threshold", wraps=loaded.set_threshold) as st:
        loaded.update_settings(lookback=20, epochs=7, dropout=0.3)
        loaded.set_threshold("ksigma", 4.0)
    assert us.call_count == 1 and st.call_count == 1  # only the direct calls
    assert (p.lookback.value, p.epochs.value, p.dropout.value) == (20, 7, 0.3)
    assert p.threshold_method.value == "ksigma" and p.threshold_param.value == 4.0
    assert (p.threshold_param.min, p.threshold_param.max) == (THRESHOLDS["ksigma"].low, THRESHOLDS["ksigma"].high)


def test_panel_refused_setting_shows_the_error_and_reverts(loaded):
    p = ControlPanel(loaded.state, loaded)
    p.hidden_sizes.value = "32, x"
    assert loaded.state.level == "error"
    assert "hidden_sizes" in p.status.value and "#8b1a1a" in p.status.value  # the error colour
    assert p.hidden_sizes.value == "128,64"


def test_panel_threshold_controls(trained):
    s = trained.state
    p = ControlPanel(s, trained)
    p.threshold_method.value = "ksigma"
    assert s.threshold_method == "ksigma" and s.threshold_param is None
    assert p.threshold_param.value == THRESHOLDS["ksigma"].default and p.threshold_param.description == "k"
    p.threshold_param.value = 2.0
    assert s.threshold_param == 2.0
    assert f"{s.threshold:.4g}" in p.threshold_info.value and f"{s.n_anomalies:,}</b> anomalies" in p.threshold_info.value
    p.threshold_method.value = "fixed"
    assert p.threshold_param.max > 0 and np.isfinite(p.threshold_param.max)


def test_panel_train_and_stop_buttons_follow_the_task(demo_small):
    c = Controller(settings={**FAST, "epochs": 2})
    assert c.load(demo_small)
    p = ControlPanel(c.state, c)
    seen = []
    c.state.observe(lambda ch: seen.append((ch["new"], p.train_button.disabled, p.stop_button.disabled)),
                    names="task")
    labels = []
    c.state.observe(lambda ch: labels.append(p.progress_label.value), names="progress")
    p.train_button.click()
    assert c.wait(120)
    assert any("epoch 1/2 · batch" in text for text in labels)  # live: "epoch 1/2 · batch 3/11 · 0.1 s ..."
    assert seen[0] == ("running", True, False)
    assert seen[-1] == ("finished", False, True)
    assert "done · 2 epochs" in p.progress_label.value and p.progress.value == 1.0
    with mock.patch.object(c, "stop") as stop:
        p.stop_button.click()
    stop.assert_called_once_with()


def browser_upload(button, content: bytes, name: str) -> list:
    """Play the browser's side of js/src/upload.js against an UploadButton: plan the chunks with
    the size limit, send them one per acknowledgement. Returns the messages Python sent back."""
    from msda_widgets.app.widgets import plan_upload
    sent: list = []
    with mock.patch.object(button, "send", side_effect=sent.append):
        plan = plan_upload(len(content), button.max_bytes, button.chunk_bytes)
        if not plan["ok"]:
            button._handle_frontend_msg(button, {"action": "refused", "name": name, "size": len(content),
                                                 "reason": plan["reason"]}, [])
            return sent
        button._handle_frontend_msg(button, {"action": "begin", "id": "t1", "name": name, "size": len(content)}, [])
        for start, end in plan["chunks"]:
            if sent[-1]["action"] != "ack":
                return sent
            button._handle_frontend_msg(button, {"action": "chunk", "id": "t1", "offset": start},
                                        [memoryview(content[start:end])])
        if sent[-1]["action"] == "ack":
            button._handle_frontend_msg(button, {"action": "end", "id": "t1"}, [])
    return sent


def test_panel_upload_errors_show_in_the_status_line(loaded):
    p = ControlPanel(loaded.state, loaded)
    rows = loaded.state.series.n_rows
    sent = browser_upload(p.upload, b"\x00\x01\x02garbage", "bad.csv")
    assert sent[-1]["action"] == "done"  # it arrived; parsing it failed
    assert loaded.state.level == "error" and "bad.csv" in p.status.value
    assert loaded.state.series.n_rows == rows  # the previous data is kept


def test_panel_refuses_a_file_above_the_limit_without_receiving_it(loaded):
    p = ControlPanel(loaded.state, loaded)
    assert p.upload.max_bytes == loaded.MAX_UPLOAD_BYTES  # the browser enforces the controller's limit
    rows = loaded.state.series.n_rows
    with mock.patch("msda_widgets.app.controller.load_csv") as parser:
        p.upload.max_bytes = 10
        sent = browser_upload(p.upload, b"a,b\n" * 5, "big.csv")
    assert sent == []  # the browser refused it: not one chunk travelled
    parser.assert_not_called()
    assert "big.csv" in p.status.value and "limited to" in p.status.value
    assert loaded.state.level == "error" and loaded.state.series.n_rows == rows


def test_upload_button_rechecks_what_the_browser_claims(loaded):
    p = ControlPanel(loaded.state, loaded)
    button = p.upload
    button.max_bytes = 100
    sent: list = []
    with mock.patch.object(button, "send", side_effect=sent.append), \
            mock.patch("msda_widgets.app.controller.load_csv") as parser:
        # declares 50 bytes, then sends more than it declared
        button._handle_frontend_msg(button, {"action": "begin", "id": "x", "name": "liar.csv", "size": 50}, [])
        button._handle_frontend_msg(button, {"action": "chunk", "id": "x", "offset": 0}, [memoryview(b"a" * 80)])
        assert sent[-1]["action"] == "abort" and "garbled" in sent[-1]["message"]
        # a stale end after the abort does nothing
        button._handle_frontend_msg(button, {"action": "end", "id": "x"}, [])
        # declares more than the limit
        button._handle_frontend_msg(button, {"action": "begin", "id": "y", "name": "huge.csv", "size": 10 ** 9}, [])
        assert sent[-1]["action"] == "abort" and "limited to" in sent[-1]["message"]
    parser.assert_not_called()
    assert "huge.csv" in p.status.value and loaded.state.level == "error"


def test_the_page_cannot_raise_the_upload_limits(loaded):
    p = ControlPanel(loaded.state, loaded)
    button = p.upload
    button.set_state({"max_bytes": 2 ** 50, "chunk_bytes": 1, "label": "Open"})   # what a page could send
    assert button.max_bytes == loaded.MAX_UPLOAD_BYTES and button.chunk_bytes == 2 ** 20
    assert button.label == "Open"                    # other state still syncs
    sent: list = []
    with mock.patch.object(button, "send", side_effect=sent.append):
        button._handle_frontend_msg(button, {"action": "begin", "id": "x", "name": "big.csv",
                                             "size": 500_000_000}, [])
        assert sent[-1]["action"] == "abort"
        button._handle_frontend_msg(button, {"action": "begin", "id": "y", "name": "ok.csv", "size": 5 * 2 ** 20}, [])
        assert sent[-1] == {"action": "ack", "id": "y", "received": 0}
        button._handle_frontend_msg(button, {"action": "chunk", "id": "y", "offset": 0},
                                    [memoryview(b"a" * (2 ** 20 + 1))])    # a chunk above the chunk size
        assert sent[-1]["action"] == "abort"


def test_a_second_upload_ends_the_first_so_no_view_waits_forever(loaded):
    p = ControlPanel(loaded.state, loaded)
    button = p.upload
    sent: list = []
    with mock.patch.object(button, "send", side_effect=sent.append):
        button._handle_frontend_msg(button, {"action": "begin", "id": "A", "name": "a.csv", "size": 10}, [])
        button._handle_frontend_msg(button, {"action": "begin", "id": "B", "name": "b.csv", "size": 10}, [])
        assert {"action": "abort", "id": "A", "message": "a.csv: replaced by a new upload."} in sent
        button._handle_frontend_msg(button, {"action": "chunk", "id": "A", "offset": 0}, [memoryview(b"x" * 10)])
        assert sent[-1]["action"] == "abort" and sent[-1]["id"] == "A"     # the stale view is told
        button._handle_frontend_msg(button, {"action": "end", "id": "A"}, [])
        assert sent[-1]["action"] == "abort" and sent[-1]["id"] == "A"


def test_panel_upload_loads_good_csv_in_chunks(loaded):
    p = ControlPanel(loaded.state, loaded)
    p.upload.chunk_bytes = 1000  # several chunks
    frame = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=200, freq="h").astype(str),
                          "x": np.sin(np.arange(200) / 5.0), "y": np.cos(np.arange(200) / 3.0)})
    content = frame.to_csv(index=False).encode()
    sent = browser_upload(p.upload, content, "mine.csv")
    assert [m["action"] for m in sent].count("ack") == -(-len(content) // 1000) + 1
    assert loaded.state.data_name == "mine.csv", loaded.state.message
    assert p.sensors.options == ("x", "y") and "mine.csv" in p.data_info.value


class _Payload:
    """Unpickling this would create the marker file."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["model.csv", "model.msda", "weights.pt"])
def test_an_uploaded_pickle_is_never_unpickled(loaded, tmp_path, name):
    import pickle
    import torch
    marker = tmp_path / "unpickled"
    p = ControlPanel(loaded.state, loaded)
    rows, detector = loaded.state.series.n_rows, loaded.state.detector
    for content in (pickle.dumps(_Payload(marker)), _torch_bytes(torch, _Payload(marker))):
        sent = browser_upload(p.upload, content, name)
        assert sent[-1]["action"] == "done"
        assert loaded.state.level == "error" and name in p.status.value
        assert not marker.exists()
    assert loaded.state.series.n_rows == rows and loaded.state.detector is detector


def _torch_bytes(torch, obj) -> bytes:
    import io
    buffer = io.BytesIO()
    torch.save({"x": obj}, buffer)
    return buffer.getvalue()


def test_panel_falls_back_to_file_upload_without_the_front_end(loaded, monkeypatch):
    from msda_widgets.app import widgets as own
    def not_built(**kwargs):
        raise own.FrontendNotBuiltError("not built")
    monkeypatch.setattr(own, "UploadButton", not_built)
    p = ControlPanel(loaded.state, loaded)
    assert isinstance(p.upload, widgets.FileUpload)
    p.upload.value = ({"name": "bad.csv", "type": "text/csv", "size": 8, "last_modified": datetime.datetime(2024, 1, 1),
                       "content": memoryview(b"\x00\x01\x02garbage")},)
    assert loaded.state.level == "error" and "bad.csv" in p.status.value
    assert p.upload.value == ()


def test_explain_methods_come_from_the_catalogue_without_the_engine_module(loaded):
    p = ControlPanel(loaded.state, loaded)
    assert "shap" in p.explain_method.options and "grad_cam" in p.explain_method.options
    assert p.explain_method.value == loaded.state.explain_method
    p.model.value = "lstm_ae"  # grad_cam needs the CNN
    assert "grad_cam" not in p.explain_method.options
    assert {v for _, v in p.model.options} >= {"deepcnn", "lstm_ae", "pca", "zscore", "kmeans", "iforest"}
    p.model.value = "iforest"  # not differentiable: perturbation methods only
    assert set(p.explain_method.options) - {loaded.state.explain_method} == {"kernel_shap", "lime"}


# ------------------------------------------------------------------------------------------- dashboard

def test_dashboard_builds_displays_and_keeps_torch_out():
    """A fresh interpreter: building the dashboard must not import torch, shap or captum."""
    code = textwrap.dedent("""
        import json, sys
        from msda_widgets.app import Dashboard
        from msda_widgets import datasets
        d = Dashboard(datasets.make_sensors(n_steps=600, n_sensors=3, anomalies=2, seed=1), warm_up=False,
                      epochs=2, lookback=8)
        bundle = d._repr_mimebundle_()
        print(json.dumps({
            "heavy": [m for m in ("torch", "shap", "captum") if m in sys.modules],
            "mime": sorted(bundle if isinstance(bundle, dict) else bundle[0]),
            "rows": d.state.series.n_rows, "level": d.state.level,
            "root": type(d.widget).__name__, "epochs": d.state.settings["epochs"],
        }))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["heavy"] == []
    assert "application/vnd.jupyter.widget-view+json" in info["mime"]
    assert info["rows"] == 600 and info["level"] == "success" and info["epochs"] == 2
    assert info["root"] == "GridBox"


def test_dashboard_end_to_end(demo_small):
    from msda_widgets.app import Dashboard
    d = Dashboard(demo_small, warm_up=False, **FAST)
    assert d.state is d.controller.state and d.panel.state is d.state
    d.panel.train_button.click()
    assert d.controller.wait(120) and d.state.task == "finished", d.state.message
    assert len(d.timeline.flagged.x) == d.state.n_anomalies == len(d.table.rows.options)
    d.table.rows.value = d.table.rows.options[0][1]
    assert d.state.explanation is not None, d.state.message
    assert _visible(d.explain_view.tabs)
    np.testing.assert_array_equal(d.timeline.flagged.selected,
                                  [int(np.searchsorted(d.timeline.flagged_positions, d.state.selected))])
    with pytest.raises(ValueError):
        Dashboard(demo_small, theme="neon")
