"""The dashboard's themes, its anywidget controls (keyboard, download) and the view fixes the
browser tests found — checked here without a browser, on the widgets' traits and messages."""

from __future__ import annotations

import base64
import re

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pytest

from msda_widgets import datasets
from msda_widgets.app.charts import LossCurve, Timeline
from msda_widgets.app.controller import Controller
from msda_widgets.app.dashboard import Dashboard
from msda_widgets.app.panel import ControlPanel
from msda_widgets.app.theme import DARK, LIGHT, palette, style_block
from msda_widgets.app.widgets import DownloadButton, KeyboardNav

FAST = dict(epochs=2, batch_size=128, lookback=8)

#: bqplot 0.13's test for a time format (``utils.is_valid_time_format`` in its JS); any other
#: format is handed to d3.format, which throws for "%..." and the tooltip view fails.
BQPLOT_TIME_FORMAT = re.compile(r"^(((((\*)|(/*)|(-*))(\s*)%([aAbBdeHIjmMLpSUwWyYZ]{1}))+)|((\s*)%([cxX]{1})))$")


def _walk(w):
    yield w
    for child in getattr(w, "children", ()) or ():
        yield from _walk(child)


def _figures(root):
    return [w for w in _walk(root) if isinstance(w, bq.Figure)]


@pytest.fixture(scope="module")
def data():
    return datasets.make_sensors(n_steps=1200, n_sensors=4, anomalies=4, seed=5)


@pytest.fixture(scope="module")
def trained_dashboard(data):
    d = Dashboard(data, warm_up=False, **FAST)
    assert d.controller.train() and d.controller.wait(120), d.state.message
    assert d.state.task == "finished" and d.state.n_anomalies >= 3, d.state.message
    return d


# ----------------------------------------------------------------------------------------- themes

def test_palette_lookup():
    assert palette("light") is LIGHT and palette("dark") is DARK and palette(DARK) is DARK
    with pytest.raises(ValueError):
        palette("neon")
    assert style_block("light") == ""
    assert style_block("dark").startswith("<style>.msda-theme-dark{")


def test_dark_dashboard_styles_every_chart_and_the_page(data):
    d = Dashboard(data, theme="dark", warm_up=False, **FAST)
    figures = _figures(d.widget)
    assert len(figures) >= 8  # timeline, loss, histogram, 3 explanation charts, 2 internals charts
    for fig in figures:
        assert fig.background_style == {"fill": DARK.surface}
        assert fig.title_style == {"fill": DARK.text} and fig.legend_text == {"fill": DARK.text}
        for axis in fig.axes:
            assert axis.color == DARK.axis and axis.label_color == DARK.text
            assert axis.tick_style.get("fill") == DARK.axis
    assert d.timeline.score_line.colors == [DARK.score]
    assert "msda-theme-dark" in d.widget._dom_classes
    styles = [w for w in _walk(d.widget) if isinstance(w, widgets.HTML) and w.value.startswith("<style>")]
    assert len(styles) == 1 and ".msda-theme-dark{" in styles[0].value
    fg, bg = DARK.levels["success"]
    assert d.state.level == "success" and f"color:{fg};background:{bg}" in d.panel.status.value


def test_light_dashboard_keeps_bqplot_defaults(data):
    d = Dashboard(data, theme="light", warm_up=False, **FAST)
    for fig in _figures(d.widget):
        assert fig.background_style == {} and fig.title_style == {}
        assert all(axis.color is None for axis in fig.axes)
    assert d.timeline.score_line.colors == [LIGHT.score]
    assert not any(isinstance(w, widgets.HTML) and w.value.startswith("<style>") for w in _walk(d.widget))
    assert "msda-theme-light" in d.widget._dom_classes


# --------------------------------------------------------------------------- front-end widget fixes

def test_timeline_tooltip_time_format_is_one_bqplot_accepts(data):
    c = Controller(settings=FAST)
    c.load(data)
    tl = Timeline(c.state, c)
    assert tl.axis.is_datetime
    assert BQPLOT_TIME_FORMAT.match(tl.point_tooltip.formats[0]), tl.point_tooltip.formats


def test_timeline_points_are_clickable_until_pan_and_zoom_is_chosen(data):
    c = Controller(settings=FAST)
    c.load(data)
    tl = Timeline(c.state, c)
    assert tl.figure.interaction is None  # bqplot's PanZoom layer would cover the points
    tl.mode.value = "zoom"
    assert tl.figure.interaction is tl.panzoom
    tl.mode.value = "select"
    assert tl.figure.interaction is None


def test_new_data_sends_sensor_options_and_selection_in_one_message(data, monkeypatch):
    c = Controller(settings=FAST)
    c.load(data)
    p = ControlPanel(c.state, c)
    sent: list[set] = []
    original = p.sensors.send_state
    monkeypatch.setattr(p.sensors, "send_state",
                        lambda key=None: (sent.append(set(p.sensors.get_state(key))), original(key))[1])
    c.load(datasets.make_sensors(n_steps=300, n_sensors=3, anomalies=1, seed=2))
    with_options = [keys for keys in sent if "_options_labels" in keys]
    assert with_options and all("index" in keys for keys in with_options), sent
    assert len(p.sensors.options) == 3 and p.sensors.index == (0, 1, 2)


def test_loss_curve_ticks_whole_epochs(data):
    c = Controller(settings=FAST)
    c.load(data)
    curve = LossCurve(c.state)
    np.testing.assert_array_equal(curve.epoch_axis.tick_values, [0.0, 1.0])
    c.state.history = ((1, 0.5, 0.6), (2, 0.4, 0.5), (3, 0.3, 0.45))
    np.testing.assert_array_equal(curve.epoch_axis.tick_values, [1.0, 2.0, 3.0])
    c.state.history = tuple((e, 1.0 / e, np.nan) for e in range(1, 41))
    assert curve.epoch_axis.tick_values is None  # d3's own (whole-number) ticks


def test_heat_map_colour_bar_only_where_it_has_room(data):
    d = Dashboard(data, warm_up=False, **FAST)
    assert not any(isinstance(a, bq.ColorAxis) for a in d.explain_view.matrix_figure.axes)
    fig = d.explain_view.layer_figure
    assert any(isinstance(a, bq.ColorAxis) for a in fig.axes)
    plot_height = int(fig.layout.height.rstrip("px")) - fig.fig_margin["top"] - fig.fig_margin["bottom"]
    assert plot_height > 200 + 100  # bqplot's bar leaves 100 px at each end


# --------------------------------------------------------------------------------- anywidgets

def test_dashboard_has_keyboard_navigation_beside_the_explanation(trained_dashboard):
    d = trained_dashboard
    assert isinstance(d.keyboard, KeyboardNav) and "msda-keyboard" in d.keyboard._dom_classes
    assert d.keyboard in list(_walk(d.explain_view.widget))


def test_keyboard_actions_step_through_the_anomalies(trained_dashboard):
    d, s = trained_dashboard, trained_dashboard.state
    flagged = np.flatnonzero(s.flags)

    def key(action: str) -> int:
        d.keyboard._handle_frontend_msg(d.keyboard, {"action": action}, [])
        assert s.explanation is not None, s.message
        return s.selected

    assert s.selected == -1  # nothing chosen yet: "next" starts at the first anomaly
    assert key("next") == flagged[0]
    assert key("next") == flagged[1]
    assert key("previous") == flagged[0]
    assert key("last") == flagged[-1]
    assert key("first") == flagged[0]
    before = s.explanation
    assert key("explain") == flagged[0] and s.explanation is not before  # explained again
    d.keyboard._handle_frontend_msg(d.keyboard, {"action": "format-disk"}, [])  # ignored
    assert s.selected == flagged[0]


def test_export_button_sends_the_controller_csv(trained_dashboard):
    d = trained_dashboard
    button = d.table.export
    assert isinstance(button, DownloadButton) and "msda-export" in button._dom_classes
    assert not button.disabled
    assert d.table.export_button not in list(_walk(d.table.widget))  # no data: link as well
    request = button.request
    button._handle_frontend_msg(button, {"action": "request"}, [])
    assert button.request == request + 1 and button.filename == "anomalies.csv"
    assert base64.b64decode(button.payload) == d.controller.export_csv()
    button._handle_frontend_msg(button, {"action": "downloaded", "request": button.request}, [])
    assert button.payload == ""  # delivered: the file is not kept in the widget state
