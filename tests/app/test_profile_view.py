"""The "Profile sensors" tab against a real Controller and AppState, without a browser: the
controller computes lazily and keeps the profile in step with the data; the view draws the
state and sends the user's choices back through the controller."""

from __future__ import annotations

import re

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest

from msda_widgets import datasets
from msda_widgets.app.controller import Controller
from msda_widgets.app.dashboard import Dashboard
from msda_widgets.app.profile_view import MATRICES, ProfileView, sparkline_points
from msda_widgets.app.theme import DARK
from msda_widgets.engine.profile import profile_sensors

FAST = dict(epochs=2, batch_size=128, lookback=8)


def _frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """Five sensors: two near-copies (redundant), a noisy sine, noise and a rarely changing one."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(t / 15) + 0.1 * rng.standard_normal(n)
    rare = np.zeros(n)
    rare[[n // 3, 2 * n // 3]] = 1.0
    return pd.DataFrame({
        "flow": base,
        "flow_copy": 2 * base + 0.001 * rng.standard_normal(n),
        "temp": np.cos(t / 40) + 0.2 * rng.standard_normal(n),
        "noise": rng.standard_normal(n),
        "valve": rare,
    }, index=pd.date_range("2024-01-01", periods=n, freq="10min"))


@pytest.fixture
def loaded() -> Controller:
    c = Controller(settings=FAST)
    assert c.load(_frame(), name="plant")
    return c


def _walk(w):
    yield w
    for child in getattr(w, "children", ()) or ():
        yield from _walk(child)


# ------------------------------------------------------------------------------------ controller

def test_profile_is_computed_only_when_shown(loaded):
    s = loaded.state
    assert s.profile is None and not s.profile_active          # loading does not profile
    loaded.show_profile()
    prof = s.profile
    assert s.profile_active and prof is not None and s.level != "error", s.message
    assert prof.sensors == s.series.sensors and prof.window == s.profile_window == 30
    assert s.profile_suggestion is not None and s.profile_seconds > 0
    expected = profile_sensors(pd.DataFrame(s.series.values, index=s.series.index,
                                            columns=list(s.series.sensors)), window=30, threshold=1.0)
    pd.testing.assert_frame_equal(prof.summary, expected.summary)
    loaded.show_profile()
    assert s.profile is prof                                    # shown again: nothing recomputed


def test_options_recompute_and_refusals_keep_the_previous_profile(loaded):
    s = loaded.state
    loaded.show_profile()
    assert loaded.set_profile_options(window=12, threshold=0.5)
    prof = s.profile
    assert (prof.window, prof.threshold, s.profile_window, s.profile_threshold) == (12, 0.5, 12, 0.5)
    assert not loaded.set_profile_options(window=1)
    assert s.level == "error" and "at least 2" in s.message and s.profile is prof and s.profile_window == 12
    assert not loaded.set_profile_options(threshold=-2)
    assert "threshold" in s.message and s.profile is prof
    assert not loaded.set_profile_options(max_correlation=1.5)
    assert s.profile_max_correlation == 0.95
    assert loaded.set_profile_options(max_correlation=0.999)    # only the suggestion is redone
    assert s.profile is prof and s.profile_suggestion.max_correlation == 0.999
    assert s.level == "info"


def test_short_data_shortens_the_default_window():
    c = Controller(settings=FAST)
    assert c.load(_frame(40), name="short")
    c.show_profile()
    assert c.state.profile.window == 20 == c.state.profile_window
    assert "Window shortened to 20 rows" in c.state.message


def test_suggestion_is_applied_to_the_sensor_selection_and_the_profile_keeps_every_sensor(loaded):
    s = loaded.state
    loaded.show_profile()
    prof, suggestion = s.profile, s.profile_suggestion
    assert "valve" in suggestion.left_out
    assert ("flow" in suggestion.sensors) != ("flow_copy" in suggestion.sensors)
    assert loaded.apply_suggested_sensors()
    assert tuple(s.settings["sensors"]) == suggestion.sensors
    assert set(s.series.sensors) == set(suggestion.sensors)
    assert s.level == "success" and "Using the" in s.message and "valve" in s.message
    assert s.profile is prof                       # the profile still covers all five sensors
    loaded.set_sensors(["flow", "temp"])
    assert s.profile is prof and len(s.profile.sensors) == 5


def test_suggestion_is_not_applied_while_training(loaded, monkeypatch):
    loaded.show_profile()
    monkeypatch.setattr(Controller, "is_training", property(lambda self: True))
    assert not loaded.apply_suggested_sensors()
    assert loaded.state.level == "warning" and "Stop the training" in loaded.state.message
    assert loaded.state.settings["sensors"] is None


def test_new_data_and_data_settings_refresh_an_active_profile(loaded):
    s = loaded.state
    loaded.show_profile()
    first = s.profile
    assert loaded.update_settings(impute="zero")          # a data setting: the profile follows
    assert s.profile is not first and s.profile.sensors == first.sensors
    assert loaded.load(_frame(300, seed=4)[["temp", "noise"]], name="two")
    assert s.profile.sensors == ("temp", "noise") and s.profile.n_rows == 300
    assert s.profile_pair == ("temp", "noise")


def test_inactive_profile_is_dropped_on_new_data_not_recomputed(loaded):
    s = loaded.state
    loaded.show_profile()
    s.profile_active = False                               # (as if the tab were never shown again)
    loaded.load(_frame(200, seed=2), name="other")
    assert s.profile is None and s.profile_suggestion is None
    loaded.show_profile()
    assert s.profile.n_rows == 200


def test_pair_rolling_correlation(loaded):
    s = loaded.state
    loaded.show_profile()
    assert len(s.profile_pair) == 2 and s.profile_pair_correlation is not None
    loaded.set_profile_pair("flow", "temp")
    pd.testing.assert_series_equal(s.profile_pair_correlation, s.profile.rolling_correlation("flow", "temp"))
    loaded.set_profile_pair("flow", "nope")
    assert s.level == "error" and "No sensor named 'nope'" in s.message and s.profile_pair == ("flow", "temp")


def test_without_data_nothing_is_computed():
    c = Controller(settings=FAST)
    c.show_profile()
    assert c.state.profile is None and c.state.level != "error"
    assert c.set_profile_options(window=50) and c.state.profile_window == 50
    assert not c.apply_suggested_sensors() and c.state.level == "warning"


# ------------------------------------------------------------------------------------ view

def test_view_draws_the_table_heatmap_and_pair(loaded):
    view = ProfileView(loaded.state, loaded)
    assert "Load data" in view.table.value                 # nothing computed yet
    view.activate()
    s = loaded.state
    prof, sg = s.profile, s.profile_suggestion
    page = view.table.value.split("<tbody>")[1]             # the rows (the header explains the marks)
    for name in prof.sensors:
        assert f">{name}</td>" in page or f"{name}</td>" in page
    assert page.count("<polyline") == len(prof.sensors)
    assert page.count("✓") == len(sg.sensors)
    assert "rarely changes" in page
    np.testing.assert_allclose(view.heatmap.color, prof.correlation.to_numpy())
    assert list(view.heatmap.row) == list(prof.sensors)
    assert (view.heatmap_colours.min, view.heatmap_colours.max) == (-1.0, 1.0)
    view.matrix.value = "co-movement"
    np.testing.assert_allclose(view.heatmap.color, prof.agreement.to_numpy())
    assert set(MATRICES) == set(view.matrix.options)
    assert (view.pair_a.value, view.pair_b.value) == s.profile_pair
    y = s.profile_pair_correlation.dropna()
    np.testing.assert_allclose(view.pair_line.y, y.to_numpy())
    assert isinstance(view.pair_line.scales["x"], bq.DateScale)
    assert "rows × 5 sensors" in view.info.value and "per 10 min" in view.info.value


def test_the_table_names_opposite_movers_and_the_heatmap_shows_opposition():
    frame = _frame()
    frame["drain"] = -frame["flow"] + 0.05 * np.random.default_rng(1).standard_normal(len(frame))
    c = Controller(settings=FAST)
    assert c.load(frame, name="plant")
    view = ProfileView(c.state, c)
    view.activate()
    prof = c.state.profile
    summ = prof.summary
    assert summ.loc["drain", "relation"] == "opposite" and summ.loc["drain", "moves_with"] in ("flow", "flow_copy")
    assert summ.loc["flow", "relation"] == "same" and summ.loc["flow", "moves_with"] == "flow_copy"
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr[^>]*>.*?</span> (\w+)</td>.*?</tr>",
                                                         view.table.value.split("<tbody>")[1])}
    pct = f"{summ.loc['drain', 'agreement']:.0%}"
    assert re.search(rf"against</i> {summ.loc['drain', 'moves_with']} <span[^>]*>\({pct}\)", rows["drain"])
    assert re.search(rf"<td[^>]*>flow_copy <span[^>]*>\({summ.loc['flow', 'agreement']:.0%}\)", rows["flow"])
    assert "against" not in rows["flow"]
    view.matrix.value = "opposite movement"
    np.testing.assert_allclose(view.heatmap.color, prof.opposition.to_numpy())
    assert "opposite movement" in view.heatmap_figure.title


def test_view_controls_go_through_the_controller(loaded):
    view = ProfileView(loaded.state, loaded)
    view.activate()
    s = loaded.state
    view.window.value = 24
    assert s.profile.window == 24
    view.threshold.value = 0.25
    assert s.profile.threshold == 0.25
    assert not {"flow", "flow_copy"} <= set(s.profile_suggestion.sensors)   # near-copies: one is left out
    view.max_correlation.value = 1.0
    assert s.profile_suggestion.max_correlation == 1.0 and {"flow", "flow_copy"} <= set(s.profile_suggestion.sensors)
    view.window.value = 10_000                             # longer than the data: refused, reverted
    assert s.level == "error" and view.window.value == 24 and s.profile.window == 24
    names = list(s.profile.sensors)
    view.heatmap.selected = np.array([[0, 2]])             # a click on a cell
    assert s.profile_pair == (names[0], names[2])
    view.heatmap.selected = np.array([[1, 1]])             # the diagonal: nothing to chart
    assert s.profile_pair == (names[0], names[2])
    view.pair_b.value = "noise"
    assert s.profile_pair == (names[0], "noise")
    view.order.value = "name"
    shown = re.findall(r"</span> ([a-z_]+)</td>", view.table.value)
    assert shown == sorted(names)
    view.apply_button.click()
    assert tuple(s.settings["sensors"]) == s.profile_suggestion.sensors
    assert view.table.value.split("<tbody>")[1].count("●") == len(s.profile_suggestion.sensors)


def test_every_profile_control_has_a_tooltip(loaded):
    view = ProfileView(loaded.state, loaded)
    controls = [w for w in _walk(view.widget)
                if isinstance(w, (widgets.Button, widgets.Dropdown, widgets.BoundedIntText,
                                  widgets.BoundedFloatText, widgets.FloatSlider))]
    assert len(controls) == 8
    assert [type(w).__name__ for w in controls if not (w.tooltip or "").strip()] == []


def test_sparkline_points():
    values = np.column_stack([np.arange(10.0), np.full(10, np.nan), np.r_[np.ones(5), np.nan * np.ones(5)]])
    pts = sparkline_points(values, n=5, width=100, height=20)
    xy = np.array(pts[0].split(","), dtype=int).reshape(-1, 2)
    assert len(xy) == 5 and xy[0, 0] == 10 and xy[-1, 0] == 990
    assert xy[0, 1] == 180 and xy[-1, 1] == 20                 # rising: from the bottom to the top
    assert pts[1] == ""                                        # no values: no line
    assert len(pts[2].split(",")) == 2 * 3                     # buckets without values are skipped


# ------------------------------------------------------------------------------------ dashboard

def test_dashboard_profile_tab_is_lazy_and_themed():
    d = Dashboard(datasets.make_sensors(n_steps=600, n_sensors=4, anomalies=2, seed=1), theme="dark",
                  warm_up=False, **FAST)
    assert d.state.profile is None
    assert d.tabs.children[0] is not d.profile_view.widget and d.tabs.selected_index == 0
    assert d.tabs.titles == ("Detect", "Profile sensors")
    d.tabs.selected_index = 1
    assert d.state.profile is not None and len(d.state.profile.sensors) == 4
    for fig in (d.profile_view.heatmap_figure, d.profile_view.pair_figure):
        assert fig.background_style == {"fill": DARK.surface}
    d.show_detection()
    assert d.tabs.selected_index == 0
    d.show_profile()
    assert d.tabs.selected_index == 1
    d.show_detection()
    d.controller.load(datasets.make_sensors(n_steps=400, n_sensors=3, anomalies=1, seed=2))
    assert len(d.state.profile.sensors) == 3               # shown once: kept up to date
