"""The explanation of the selected anomaly: by sensor, by time x sensor, the raw window, and the
network's own activations.

It renders ``state.explanation`` (an ``msda_widgets.engine.explain.Explanation``) and
``state.activations`` (layer name -> DataFrame, time x units); the Prev/Next buttons step through
the anomalies with the controller. Nothing here imports torch, shap or captum.
"""

from __future__ import annotations

import html
from typing import Any, Optional

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from .charts import ANOMALY, NORMAL, sensor_colour
from .panel import explain_methods
from .theme import Palette, palette, style_figure

__all__ = ["ExplainView", "HEATMAP_SENSORS", "HEATMAP_UNITS", "PLACEHOLDER"]

#: Sensors shown in the time x sensor heat map (the largest by |total|).
HEATMAP_SENSORS = 12
#: Units shown in an activation heat map (the most active).
HEATMAP_UNITS = 64
#: Sensors drawn in the raw window chart.
RAW_SENSORS = 3
PLACEHOLDER = ("Click a red point on the timeline (or a row of the anomaly table) to see which sensors "
               "and moments made it unusual.")
NEGATIVE = "#2166ac"
POSITIVE = "#b2182b"
_DIVERGING = ["#2166ac", "#f7f7f7", "#b2182b"]
_SEQUENTIAL = ["#440154", "#21918c", "#fde725"]


def _figure(marks: list, axes: list, title: str, height: str = "260px", **kwargs: Any) -> bq.Figure:
    return bq.Figure(marks=marks, axes=axes, title=title, animation_duration=0,
                     fig_margin=kwargs.pop("fig_margin", dict(top=40, bottom=40, left=90, right=20)),
                     layout=widgets.Layout(width="100%", height=height), **kwargs)


#: bqplot's ColorAxis leaves 100 px at each end of its bar: the plot area must be taller than this
#: for the bar to have any length at all.
COLOUR_BAR_OFFSETS_PX = 200


def _heatmap(title: str, colours: list, row_label: str, column_label: str, height: str = "280px",
             theme: "str | Palette" = "light", colour_bar: bool = False):
    """A GridHeatMap figure. ``colour_bar``: add bqplot's ColorAxis (needs a plot area taller
    than :data:`COLOUR_BAR_OFFSETS_PX`, or the bar is drawn with no length)."""
    theme = palette(theme)
    rows, cols = bq.OrdinalScale(reverse=True), bq.OrdinalScale()
    colour = bq.ColorScale(colors=colours)
    mark = bq.GridHeatMap(color=np.zeros((2, 2)), scales={"row": rows, "column": cols, "color": colour},
                          stroke=theme.heatmap_stroke, null_color=theme.heatmap_null,
                          tooltip=bq.Tooltip(fields=["row", "column", "color"],
                                             labels=[row_label, column_label, "value"],
                                             formats=["", "", ".3g"]))
    axes = [bq.Axis(scale=cols, label=column_label), bq.Axis(scale=rows, side="left")]
    margin = dict(top=40, bottom=40, left=90, right=20)
    if colour_bar:
        axes.append(bq.ColorAxis(scale=colour, side="right"))
        margin["right"] = 70
    fig = _figure([mark], axes, title, height=height, fig_margin=margin)
    style_figure(fig, theme)
    return mark, colour, fig


def _set_heatmap(mark: bq.GridHeatMap, colour: bq.ColorScale, matrix: np.ndarray, rows: list, columns: list,
                 diverging: bool) -> bool:
    """Fill a GridHeatMap (rows x columns). False (and nothing drawn) for a single row or column:
    bqplot squeezes such a colour array to 1-D."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or min(matrix.shape) < 2:
        return False
    finite = matrix[np.isfinite(matrix)]
    if diverging:
        m = float(np.max(np.abs(finite))) if finite.size else 1.0
        m = m if m > 0 else 1.0
        colour.min, colour.max, colour.mid = -m, m, 0.0
    else:
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        hi = hi if hi > lo else lo + 1.0
        colour.min, colour.max, colour.mid = lo, hi, None
    with mark.hold_sync():
        mark.color = matrix        # first: the row / column validators compare with its shape
        mark.row = np.array([str(r) for r in rows])
        mark.column = np.array([str(c) for c in columns])
    return True


class ExplainView:
    """Tabs "Explanation" and "Model internals" for the selected anomaly. ``.widget`` is the root."""

    def __init__(self, state: Any, controller: Any, *, theme: "str | Palette" = "light",
                 keyboard: Optional[widgets.Widget] = None) -> None:
        self.state = state
        self.controller = controller
        self.palette = p = palette(theme)
        self.keyboard = keyboard

        # -- navigation -----------------------------------------------------------------------------
        self.prev_button = widgets.Button(
            description="Prev", icon="step-backward", layout=widgets.Layout(width="80px"),
            tooltip="Explain the anomaly just before this one in time.")
        self.next_button = widgets.Button(
            description="Next", icon="step-forward", layout=widgets.Layout(width="80px"),
            tooltip="Explain the next anomaly in time.")
        self.prev_button.on_click(lambda _b: self.controller.select_previous())
        self.next_button.on_click(lambda _b: self.controller.select_next())
        self.method_echo = widgets.HTML(tooltip="The explanation method in use (change it in the panel).",
                                        layout=widgets.Layout(min_width="130px"))
        self.placeholder = widgets.HTML(
            f"<div style='color:{p.muted};padding:12px'>{html.escape(PLACEHOLDER)}</div>")

        # -- explanation tab --------------------------------------------------------------------------
        self.header = widgets.HTML()
        xs, ys = bq.OrdinalScale(), bq.LinearScale()
        bar_colours = [p.diverging[0], p.diverging[2]] if p.dark else [NEGATIVE, POSITIVE]
        self.bar_colours = bq.ColorScale(colors=bar_colours, min=0.0, max=1.0)
        self.sensor_bars = bq.Bars(
            x=np.array([], dtype=str), y=np.empty(0), color=np.empty(0), orientation="horizontal",
            scales={"x": xs, "y": ys, "color": self.bar_colours}, padding=0.15,
            tooltip=bq.Tooltip(fields=["x", "y"], labels=["sensor", "contribution"], formats=["", ".4g"]))
        self.by_sensor_figure = _figure(
            [self.sensor_bars],
            [bq.Axis(scale=xs, side="left"),
             bq.Axis(scale=ys, label="contribution to the score", tick_format=".2g", grid_lines="dashed",
                     num_ticks=5)],  # the chart is narrow: d3's ~10 ticks run into each other
            "Which sensors")
        self.by_sensor_figure.add_class("msda-explain-bars")
        style_figure(self.by_sensor_figure, p)
        diverging = list(p.diverging) if p.dark else _DIVERGING
        self.matrix_map, self.matrix_colours, self.matrix_figure = _heatmap(
            "When and where", diverging, "sensor", "time step (0 = this point)", theme=p)
        self.raw_x, self.raw_y = bq.LinearScale(), bq.LinearScale(min=-0.05, max=1.05)
        self.raw_lines = bq.Lines(
            x=np.empty(0), y=np.empty(0), scales={"x": self.raw_x, "y": self.raw_y}, marker="circle",
            marker_size=16, display_legend=True, labels=[], colors=[NORMAL])
        self.raw_figure = _figure(
            [self.raw_lines],
            [bq.Axis(scale=self.raw_x, label="time step (0 = this point)", tick_format="d"),
             bq.Axis(scale=self.raw_y, side="left", label="reading (0–1, as on the timeline)",
                     tick_format=".1f")],
            "The readings in the window (top sensors)", height="240px", legend_location="top-left",
            fig_margin=dict(top=40, bottom=40, left=60, right=20))
        style_figure(self.raw_figure, p)
        self.note = widgets.HTML()
        self.explanation_box = widgets.VBox([
            self.header, self.note,
            widgets.HBox([widgets.Box([self.by_sensor_figure], layout=widgets.Layout(width="50%")),
                          widgets.Box([self.matrix_figure], layout=widgets.Layout(width="50%"))]),
            self.raw_figure])

        # -- model internals tab ----------------------------------------------------------------------
        self.layer = widgets.Dropdown(
            description="layer", options=[], layout=widgets.Layout(width="320px"),
            tooltip="Pick a layer of the network to see how strongly each of its units reacted to this "
                    "window, step by step.")
        self.layer.observe(lambda _ch: self._draw_layer(), names="value")
        self.layer_info = widgets.HTML()
        self.layer_map, self.layer_colours, self.layer_figure = _heatmap(
            "Activations", _SEQUENTIAL, "unit", "time step", height="440px", theme=p, colour_bar=True)
        ux, uy = bq.OrdinalScale(), bq.LinearScale()
        self.unit_bars = bq.Bars(x=np.array([], dtype=str), y=np.empty(0), scales={"x": ux, "y": uy},
                                 colors=[NORMAL], padding=0.1,
                                 tooltip=bq.Tooltip(fields=["x", "y"], labels=["unit", "activation"],
                                                    formats=["", ".3g"]))
        self.unit_figure = _figure([self.unit_bars],
                                   [bq.Axis(scale=ux, tick_rotate=-60, tick_style={"font-size": "8px"}),
                                    bq.Axis(scale=uy, side="left", tick_format=".2g")],
                                   "Activations (one value per unit)", height="260px",
                                   fig_margin=dict(top=40, bottom=60, left=60, right=20))
        style_figure(self.unit_figure, p)
        cx, cy = bq.LinearScale(), bq.LinearScale(min=0.0)
        self.cam_line = bq.Lines(x=np.empty(0), y=np.empty(0), scales={"x": cx, "y": cy}, colors=[ANOMALY],
                                 marker="circle", marker_size=16, fill="bottom", fill_opacities=[0.2])
        self.cam_figure = _figure([self.cam_line],
                                  [bq.Axis(scale=cx, label="time step (0 = this point)", tick_format="d"),
                                   bq.Axis(scale=cy, side="left", label="Grad-CAM",
                                           tick_format=".2g")],
                                  "Grad-CAM: where in time the CNN looked", height="220px",
                                  fig_margin=dict(top=40, bottom=40, left=60, right=20))
        style_figure(self.cam_figure, p)
        self.internals_box = widgets.VBox([self.layer, self.layer_info, self.layer_figure, self.unit_figure,
                                           self.cam_figure])

        self.tabs = widgets.Tab(children=[self.explanation_box, self.internals_box],
                                titles=("Explanation", "Model internals"))
        nav = [self.prev_button, self.next_button, self.method_echo]
        if keyboard is not None:  # e.g. a KeyboardNav: ← → through the anomalies
            nav.insert(2, keyboard)
        self.widget = widgets.VBox(
            [widgets.HBox(nav, layout=widgets.Layout(align_items="center")),
             self.placeholder, self.tabs],
            layout=widgets.Layout(width="100%"))
        self.widget.add_class("msda-explain")

        state.observe(lambda _ch: self._draw_explanation(), names="explanation")
        state.observe(lambda _ch: self._draw_activations(), names="activations")
        state.observe(lambda _ch: self._draw_echo(), names=["explain_method", "explaining"])
        state.observe(lambda _ch: self._draw_nav(), names=["flags", "n_anomalies", "task"])
        self._draw_explanation()
        self._draw_activations()
        self._draw_echo()
        self._draw_nav()

    # -- drawing ----------------------------------------------------------------------------------
    def _show(self, widget: widgets.Widget, visible: bool) -> None:
        widget.layout.display = None if visible else "none"

    def _draw_nav(self) -> None:
        none = self.state.n_anomalies == 0 or self.state.task == "running"
        self.prev_button.disabled = self.next_button.disabled = none

    def _draw_echo(self) -> None:
        method = self.state.explain_method
        description = explain_methods(None).get(method, "")
        busy = " · <i>explaining…</i>" if self.state.explaining else ""
        self.method_echo.value = (f"<span style='font-size:12px'>method <b>{html.escape(method)}</b>"
                                  f"{busy}</span>")
        self.method_echo.tooltip = f"{method}: {description}" if description else method

    def _draw_explanation(self) -> None:
        e = self.state.explanation
        self._show(self.placeholder, e is None)
        self._show(self.tabs, e is not None)
        if e is None:
            with self.sensor_bars.hold_sync():
                self.sensor_bars.x = np.array([], dtype=str)
                self.sensor_bars.y = np.empty(0)
                self.sensor_bars.color = np.empty(0)
            with self.raw_lines.hold_sync():
                self.raw_lines.x = np.empty(0)
                self.raw_lines.y = np.empty(0)
            self.header.value = self.note.value = ""
            self._draw_cam(None)
            return
        by_sensor = e.by_sensor
        values = by_sensor.to_numpy(dtype=np.float64)
        with self.sensor_bars.hold_sync():
            self.sensor_bars.x = np.array([str(s) for s in by_sensor.index])
            self.sensor_bars.y = values
            self.sensor_bars.color = (values > 0).astype(np.float64)
        self.by_sensor_figure.layout.height = f"{max(200, 60 + 22 * len(values))}px"

        top = [s for s in by_sensor.index[:HEATMAP_SENSORS]]
        matrix = e.matrix
        shown = _set_heatmap(self.matrix_map, self.matrix_colours, matrix[top].to_numpy().T, top,
                             [int(o) for o in matrix.index], diverging=True)
        self._show(self.matrix_figure, shown)
        self.matrix_figure.title = ("When and where" if len(e.sensors) <= HEATMAP_SENSORS
                                    else f"When and where (top {HEATMAP_SENSORS} of {len(e.sensors)} sensors)")
        self._draw_raw(e, list(by_sensor.index[:RAW_SENSORS]))
        self._draw_header(e)
        self._draw_cam(e)

    def _draw_raw(self, e: Any, names: list) -> None:
        raw = np.asarray(e.raw, dtype=np.float64)
        offsets = np.asarray(e.offsets, dtype=np.float64)
        if len(offsets) != raw.shape[0]:
            offsets = np.arange(-raw.shape[0] + 1, 1, dtype=np.float64)
        series = self.state.series
        ys, colours = [], []
        for name in names:
            j = list(e.sensors).index(name)
            col = raw[:, j]
            if series is not None and name in series.sensors:
                k = list(series.sensors).index(name)
                lo, hi = float(np.nanmin(series.values[:, k])), float(np.nanmax(series.values[:, k]))
                colours.append(sensor_colour(k))
            else:
                lo, hi = float(np.nanmin(col)), float(np.nanmax(col))
                colours.append(sensor_colour(j))
            ys.append((col - lo) / (hi - lo) if hi > lo else np.full_like(col, 0.5))
        with self.raw_lines.hold_sync():
            self.raw_lines.x = np.tile(offsets, (len(ys), 1)) if ys else np.empty(0)
            self.raw_lines.y = np.array(ys) if ys else np.empty(0)
            self.raw_lines.colors = colours or [NORMAL]
            self.raw_lines.labels = [str(n) for n in names]

    def _draw_header(self, e: Any) -> None:
        when = e.when
        series, pos = self.state.series, self.state.selected
        if series is not None and 0 <= pos < series.n_rows:
            when = series.index[pos]
        delta = "" if e.delta is None else f" · additivity gap {e.delta:.2g}"
        verdict = (f"<b style='color:{ANOMALY}'>anomaly</b>" if e.score > e.threshold else "normal")
        self.header.value = (
            f"<div style='font-size:13px;line-height:1.5'><b>{html.escape(str(when))}</b> · {verdict} · "
            f"score <b>{e.score:.4g}</b> (threshold {e.threshold:.4g}) · base value {e.base_value:.4g} · "
            f"method <b>{html.escape(e.method)}</b> · {e.seconds:.2f} s{delta}<br>"
            f"<span style='color:{self.palette.muted}'>Red bars and cells pushed the score up, blue ones "
            f"pulled it down. Top sensors: "
            f"{html.escape(', '.join(map(str, e.top_sensors[:3])))}.</span></div>")
        self.note.value = (f"<div style='font-size:12px;color:{self.palette.note}'>Grad-CAM explains time steps only: "
                           "every sensor gets the same share, so the sensor bars carry no information. "
                           "See the time profile under “Model internals”.</div>") if e.by_time_only else ""

    def _draw_cam(self, e: Optional[Any]) -> None:
        if e is None or e.method != "grad_cam":
            self._show(self.cam_figure, False)
            with self.cam_line.hold_sync():
                self.cam_line.x = np.empty(0)
                self.cam_line.y = np.empty(0)
            return
        profile = e.by_time
        with self.cam_line.hold_sync():
            self.cam_line.x = np.asarray(profile.index, dtype=np.float64)
            self.cam_line.y = profile.to_numpy(dtype=np.float64)
        self._show(self.cam_figure, True)

    def _draw_activations(self) -> None:
        acts = self.state.activations or {}
        current = self.layer.value
        names = list(acts)
        self.layer.options = names
        self.layer.value = current if current in names else (names[0] if names else None)
        self._draw_layer()

    def _draw_layer(self) -> None:
        acts = self.state.activations or {}
        frame: Optional[pd.DataFrame] = acts.get(self.layer.value) if self.layer.value else None
        if frame is None or frame.size == 0:
            self._show(self.layer_figure, False)
            self._show(self.unit_figure, False)
            self.layer_info.value = (f"<span style='color:{self.palette.muted}'>Select an anomaly to see the network's "
                                     "activations.</span>")
            return
        values = frame.to_numpy(dtype=np.float64)  # time x units
        note = ""
        if len(frame) == 1:  # one value per unit: bars
            units = [str(c) for c in frame.columns]
            with self.unit_bars.hold_sync():
                self.unit_bars.x = np.array(units)
                self.unit_bars.y = values[0]
            self._show(self.layer_figure, False)
            self._show(self.unit_figure, True)
        else:
            cols = np.arange(values.shape[1])
            if len(cols) > HEATMAP_UNITS:  # the most active units
                cols = np.sort(np.argsort(-np.abs(values).max(axis=0), kind="stable")[:HEATMAP_UNITS])
                note = f" (the {HEATMAP_UNITS} most active of {values.shape[1]} units)"
            shown = _set_heatmap(self.layer_map, self.layer_colours, values[:, cols].T,
                                 [str(frame.columns[c]) for c in cols], [str(i) for i in frame.index],
                                 diverging=bool(np.nanmin(values) < 0))
            self._show(self.layer_figure, shown)
            self._show(self.unit_figure, False)
        self.layer_info.value = (f"<span style='font-size:12px'>{html.escape(str(self.layer.value))}: "
                                 f"{frame.shape[0]} time step(s) × {frame.shape[1]} units{note}</span>")
