"""The "Profile sensors" tab: what each sensor does before any model is trained.

It renders ``state.profile`` (an :class:`msda_widgets.engine.profile.SensorProfile`), its
``state.profile_suggestion`` and ``state.profile_pair_correlation``:

* a compact per-sensor table: a sparkline of the window means (inline SVG, one string for the
  whole table: cheap to rebuild), the step directions (increase / decrease / equal), the largest
  rate of change relative to the other sensors, growth / decay counts, the sensor it moves with
  (or against) most consistently, missing values and the suggestion (kept, or why not);
* a heat map between sensors (correlation, co-movement, opposite movement or correlation drift);
  a click on a cell charts that pair's rolling correlation over time;
* the window length, growth / decay threshold and maximum correlation controls, and a
  "Use suggested sensors" button that hands the suggestion to the detector's sensor selection.

Views only call the controller; the controller computes (lazily: when the tab is first shown).
"""

from __future__ import annotations

import html
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from .charts import MAX_POINTS, TimeAxis, UTCDateScale, downsample, sensor_colour
from .explain_view import _heatmap, _set_heatmap
from .theme import Palette, palette, style_figure

__all__ = ["ProfileView", "MATRICES", "ORDERS", "SPARK_POINTS", "PLACEHOLDER"]

#: The heat map's choices: label -> (SensorProfile attribute, diverging colours?).
MATRICES = {
    "correlation": ("correlation", True),
    "co-movement": ("agreement", False),
    "opposite movement": ("opposition", False),
    "correlation drift": ("correlation_drift", False),
}
#: Table orders: label -> (column of the table data, descending?).
ORDERS = {
    "suggestion": ("rank", False),
    "name": ("sensor", False),
    "activity": ("activity", True),
    "max rate": ("max_rate_relative", True),
    "missing": ("n_missing", True),
}
#: Points per sparkline (window means are averaged into this many buckets).
SPARK_POINTS = 60
SPARK_W, SPARK_H = 110, 22
PLACEHOLDER = "Load data to profile its sensors."
_SEQUENTIAL = ["#f7fbff", "#6baed6", "#08306b"]
_SEQUENTIAL_DARK = ["#1b1b1b", "#2f6f9f", "#9ecbff"]


def sparkline_points(values: np.ndarray, n: int = SPARK_POINTS, width: int = SPARK_W,
                     height: int = SPARK_H) -> list[str]:
    """SVG polyline ``points`` for each column of ``values`` (K x S): K rows averaged into at most
    ``n`` buckets and scaled to a box of ``10 * width`` x ``10 * height`` (whole numbers; draw it
    with ``viewBox="0 0 {10 * width} {10 * height}"``); gaps (NaN) are skipped. "" for a column
    without values."""
    values = np.asarray(values, dtype=np.float64)
    K, S = values.shape
    if K == 0:
        return [""] * S
    buckets = min(n, K)
    edges = np.linspace(0, K, buckets + 1).astype(np.int64)
    ok = np.isfinite(values)
    csum = np.vstack([np.zeros((1, S)), np.cumsum(np.where(ok, values, 0.0), axis=0)])
    ccnt = np.vstack([np.zeros((1, S)), np.cumsum(ok, axis=0)])
    sums = csum[edges[1:]] - csum[edges[:-1]]
    counts = ccnt[edges[1:]] - ccnt[edges[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = sums / counts                                    # (buckets, S), NaN where empty
        fin = np.isfinite(y)
        lo = np.where(fin, y, np.inf).min(axis=0)
        hi = np.where(fin, y, -np.inf).max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        py = np.rint(10 * ((height - 2) - (y - lo) / span * (height - 4)))
    px = np.rint(10 * (np.linspace(1, width - 1, buckets) if buckets > 1 else np.array([width / 2])))
    out = []
    for s in range(S):
        keep = fin[:, s]
        if not keep.any():
            out.append("")
            continue
        xy = np.empty((int(keep.sum()), 2), dtype=np.int64)
        xy[:, 0], xy[:, 1] = px[keep], py[keep, s]
        out.append(",".join(map(str, xy.ravel().tolist())))
    return out


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}"


class ProfileView:
    """The profiling tab. ``.widget`` is the root; it asks the controller for a profile only when
    :meth:`activate` is called (the dashboard does so when the tab is first shown)."""

    def __init__(self, state: Any, controller: Any, *, theme: "str | Palette" = "light") -> None:
        self.state = state
        self.controller = controller
        self.palette = p = palette(theme)
        self._syncing = False
        self._matrix_names: list[str] = []
        self._table_key: Any = None
        self._spark: tuple = (None, [])

        # -- controls -------------------------------------------------------------------------------
        self.window = widgets.BoundedIntText(
            value=int(state.profile_window), min=2, max=10 ** 9, description="Window",
            layout=widgets.Layout(width="150px"), style={"description_width": "55px"},
            tooltip="Rows per window for the window statistics (mean, std, their change and rate, "
                    "growth / decay counts), the sparklines and the correlation drift.")
        self.threshold = widgets.BoundedFloatText(
            value=float(state.profile_threshold), min=0.0, max=1e6, step=0.25, description="Growth σ",
            layout=widgets.Layout(width="160px"), style={"description_width": "65px"},
            tooltip="Growth / decay threshold: a step counts as growth when it rises by more than this "
                    "many standard deviations of the sensor's own steps (decay: falls by more). "
                    "0 counts every rise and fall.")
        self.max_correlation = widgets.FloatSlider(
            value=float(state.profile_max_correlation), min=0.5, max=1.0, step=0.01, description="Max |r|",
            continuous_update=False, readout_format=".2f", layout=widgets.Layout(width="260px"),
            style={"description_width": "55px"},
            tooltip="Suggestion: a sensor whose absolute correlation with an already chosen sensor reaches "
                    "this value is left out as redundant.")
        self.apply_button = widgets.Button(
            description="Use suggested sensors", icon="check", button_style="primary",
            layout=widgets.Layout(width="190px"),
            tooltip="Use the suggested sensors (marked ✓ in the table) as the detector's sensors; "
                    "press Train afterwards.")
        self.apply_button.add_class("msda-profile-apply")
        self.order = widgets.Dropdown(
            options=list(ORDERS), value="suggestion", description="Order",
            layout=widgets.Layout(width="190px"), style={"description_width": "45px"},
            tooltip="Order of the sensor table.")
        self.info = widgets.HTML()
        self.window.observe(self._on_options, names="value")
        self.threshold.observe(self._on_options, names="value")
        self.max_correlation.observe(self._on_max_correlation, names="value")
        self.apply_button.on_click(lambda _b: self.controller.apply_suggested_sensors())
        self.order.observe(lambda _c: self._render_table(), names="value")

        # -- table ------------------------------------------------------------------------------------
        self.table = widgets.HTML(f"<div style='color:{p.muted};padding:8px'>{html.escape(PLACEHOLDER)}</div>",
                                  layout=widgets.Layout(width="100%", max_height="520px", overflow="auto"))
        self.table.add_class("msda-profile-table")

        # -- heat map -----------------------------------------------------------------------------
        self.matrix = widgets.Dropdown(
            options=list(MATRICES), value="correlation", description="Show",
            layout=widgets.Layout(width="230px"), style={"description_width": "40px"},
            tooltip="correlation: Pearson r of the values; co-movement: share of steps in which two sensors "
                    "move the same way (both up, both down or both flat); opposite movement: share of steps "
                    "in which one goes up and the other down; correlation drift: how much r changes from "
                    "window to window.")
        self.matrix.observe(lambda _c: self._render_matrix(), names="value")
        diverging = list(p.diverging)
        self.heatmap, self.heatmap_colours, self.heatmap_figure = _heatmap(
            "Between sensors", diverging, "sensor", "", height="440px", theme=p, colour_bar=True)
        self.heatmap_figure.fig_margin = dict(top=40, bottom=110, left=150, right=70)
        self.heatmap.interactions = {"click": "select"}
        self.heatmap.selected_style = {"stroke": "#ff7f0e", "stroke-width": "3"}
        self.heatmap.observe(self._on_cell, names="selected")
        self.heatmap_figure.axes[0].tick_rotate = -45
        self.heatmap_figure.add_class("msda-profile-heatmap")

        # -- rolling correlation of a pair ------------------------------------------------------------
        self.pair_a = widgets.Dropdown(description="Pair", layout=widgets.Layout(width="260px"),
                                       style={"description_width": "35px"},
                                       tooltip="First sensor of the pair whose rolling correlation is charted.")
        self.pair_b = widgets.Dropdown(description="with", layout=widgets.Layout(width="250px"),
                                       style={"description_width": "35px"},
                                       tooltip="Second sensor of the pair (or click a heat-map cell).")
        self.pair_a.observe(self._on_pair, names="value")
        self.pair_b.observe(self._on_pair, names="value")
        self.date_scale, self.linear_scale = UTCDateScale(), bq.LinearScale()
        self.r_scale = bq.LinearScale(min=-1.0, max=1.0)
        self.pair_line = bq.Lines(x=np.empty(0), y=np.empty(0), scales={"x": self.linear_scale, "y": self.r_scale},
                                  colors=[sensor_colour(0)], stroke_width=1.2)
        self.zero_line = bq.Lines(x=np.empty(0), y=np.empty(0), scales={"x": self.linear_scale, "y": self.r_scale},
                                  colors=[p.muted], line_style="dashed", stroke_width=1)
        self.pair_x_axis = bq.Axis(scale=self.linear_scale, num_ticks=6)
        self.pair_figure = bq.Figure(
            marks=[self.zero_line, self.pair_line],
            axes=[self.pair_x_axis, bq.Axis(scale=self.r_scale, side="left", label="r",
                                            tick_values=np.array([-1.0, -0.5, 0.0, 0.5, 1.0]))],
            title="Rolling correlation", animation_duration=0,
            fig_margin=dict(top=40, bottom=35, left=50, right=15),
            layout=widgets.Layout(width="100%", height="400px"))
        self.pair_figure.add_class("msda-profile-pair")
        style_figure(self.heatmap_figure, p)
        style_figure(self.pair_figure, p)

        controls = widgets.HBox([self.window, self.threshold, self.max_correlation, self.apply_button, self.order],
                                layout=widgets.Layout(flex_flow="row wrap", align_items="center",
                                                      grid_gap="4px 10px"))
        # the table across the whole width (its reasons are long), the two charts side by side below
        heat = widgets.VBox([self.matrix, self.heatmap_figure], layout=widgets.Layout(width="50%", min_width="0"))
        pair = widgets.VBox([widgets.HBox([self.pair_a, self.pair_b], layout=widgets.Layout(flex_flow="row wrap")),
                             self.pair_figure],
                            layout=widgets.Layout(flex="1 1 0", min_width="0", padding="0 0 0 8px"))
        self.widget = widgets.VBox([controls, self.info, self.table, widgets.HBox([heat, pair])],
                                   layout=widgets.Layout(width="100%", min_width="0"))
        self.widget.add_class("msda-profile")

        state.observe(self._on_profile, names=["profile"])
        state.observe(self._on_suggestion, names=["profile_suggestion"])
        state.observe(self._on_pair_state, names=["profile_pair", "profile_pair_correlation"])
        state.observe(self._on_option_state, names=["profile_window", "profile_threshold",
                                                    "profile_max_correlation"])
        state.observe(self._on_settings, names=["settings"])
        if state.profile is not None:
            self._on_profile()

    # -- user -> controller ---------------------------------------------------------------------------
    def activate(self) -> None:
        """The tab is shown: ask the controller for the profile (computed once, then kept fresh)."""
        self.controller.show_profile()

    def _on_options(self, _change: Any = None) -> None:
        if self._syncing:
            return
        ok = self.controller.set_profile_options(window=int(self.window.value),
                                                 threshold=float(self.threshold.value))
        if not ok:  # refused: show the kept values again
            self._on_option_state()

    def _on_max_correlation(self, _change: Any = None) -> None:
        if self._syncing:
            return
        if not self.controller.set_profile_options(max_correlation=float(self.max_correlation.value)):
            self._on_option_state()

    def _on_cell(self, change: dict) -> None:
        prof, sel = self.state.profile, change["new"]
        if self._syncing or prof is None or sel is None or len(sel) == 0:
            return
        row, col = (int(v) for v in np.asarray(sel).reshape(-1, 2)[0])
        names = self._matrix_names
        if row == col or not (0 <= row < len(names) and 0 <= col < len(names)):
            return
        self.controller.set_profile_pair(names[row], names[col])

    def _on_pair(self, _change: Any = None) -> None:
        a, b = self.pair_a.value, self.pair_b.value
        if self._syncing or a is None or b is None or a == b:
            return
        if (a, b) != tuple(self.state.profile_pair):
            self.controller.set_profile_pair(a, b)

    # -- state -> widgets -----------------------------------------------------------------------------
    def _on_option_state(self, _change: Any = None) -> None:
        s = self.state
        self._syncing = True
        try:
            self.window.value = int(s.profile_window)
            self.threshold.value = float(s.profile_threshold)
            self.max_correlation.value = min(max(float(s.profile_max_correlation), 0.5), 1.0)
        finally:
            self._syncing = False

    def _on_profile(self, _change: Any = None) -> None:
        prof = self.state.profile
        self._matrix_names = list(prof.sensors) if prof is not None else []
        self._syncing = True
        try:
            names = list(prof.sensors) if prof is not None else []
            with self.pair_a.hold_sync(), self.pair_b.hold_sync():
                self.pair_a.options = names
                self.pair_b.options = names
        finally:
            self._syncing = False
        self._render_info()
        self._render_table()
        self._render_matrix()
        self._on_pair_state()

    def _on_suggestion(self, _change: Any = None) -> None:
        self._render_info()
        self._render_table()

    def _on_settings(self, change: dict) -> None:
        old, new = change.get("old") or {}, change.get("new") or {}
        if old.get("sensors") != new.get("sensors") and self.state.profile is not None:
            self._render_table()  # the "in model" marks

    def _render_info(self) -> None:
        prof, sg, p = self.state.profile, self.state.profile_suggestion, self.palette
        if prof is None:
            self.info.value = ""
            return
        kept = f"; {len(sg.sensors)} of {len(prof.sensors)} sensors suggested" if sg is not None else ""
        self.info.value = (
            f"<div style='color:{p.muted};font-size:12px;padding:2px 0 6px 0'>"
            f"{prof.n_rows:,} rows × {len(prof.sensors)} sensors (all candidate sensors, after imputation); "
            f"{prof.n_windows:,} windows of {prof.window} rows; rates {html.escape(prof.rate_unit)}; growth / decay: "
            f"steps beyond {prof.threshold:g} σ of the sensor's steps{kept}. "
            f"Computed in {self.state.profile_seconds * 1000:.0f} ms.</div>")

    def _render_table(self) -> None:
        prof, sg, p = self.state.profile, self.state.profile_suggestion, self.palette
        if prof is None:
            self._table_key = None
            self.table.value = f"<div style='color:{p.muted};padding:8px'>{html.escape(PLACEHOLDER)}</div>"
            return
        key = (id(prof), id(sg), self.order.value, self.state.settings.get("sensors"))
        if key == self._table_key:  # the profile and its suggestion arrive together: draw once
            return
        self._table_key = key
        summ = prof.summary
        names = list(prof.sensors)
        if self._spark[0] is not prof:
            self._spark = (prof, sparkline_points(prof.window_mean.to_numpy(), SPARK_POINTS))
        points = self._spark[1]
        rank = {n: i for i, n in enumerate(sg.table.index)} if sg is not None else {n: i for i, n in enumerate(names)}
        reason = sg.table["reason"] if sg is not None else None
        keep = set(sg.sensors) if sg is not None else set()
        selected = self.state.settings.get("sensors")
        in_model = set(names) if not selected else set(selected)
        column, descending = ORDERS[self.order.value]
        if column == "rank":
            order = sorted(range(len(names)), key=lambda i: rank[names[i]])
        elif column == "sensor":
            order = sorted(range(len(names)), key=lambda i: names[i].lower())
        else:
            v = summ[column].to_numpy(dtype=np.float64)
            order = sorted(range(len(names)), key=lambda i: (-np.nan_to_num(v[i], nan=-np.inf) if descending
                                                              else np.nan_to_num(v[i], nan=np.inf), names[i]))
        text, muted, border = p.text or "inherit", p.muted, p.border or "#dddddd"
        head = ("<tr>" + "".join(f"<th title='{html.escape(t)}' style='text-align:{a};padding:2px 6px;"
                                 f"border-bottom:1px solid {border};white-space:nowrap'>{h}</th>" for h, a, t in (
                                     ("sensor", "left", "✓: suggested; ● : in the model's current sensor selection"),
                                     ("trend", "left", f"window means over time ({prof.window}-row windows)"),
                                     ("↑ / ↓ / =", "right", "share of steps that increase / decrease / stay equal"),
                                     ("max rate", "right", f"largest |rate of change| ({prof.rate_unit}); "
                                                           "× = relative to the typical sensor, in its own std"),
                                     ("growth / decay", "right", f"steps beyond ±{prof.threshold:g} σ of the "
                                                                 "sensor's own steps"),
                                     ("moves with", "left", "the sensor it moves with most consistently, and "
                                                            "the share of their common steps: the same way "
                                                            "(both up, both down or both flat), or 'against' "
                                                            "it: the opposite way (one up, the other down)"),
                                     ("missing", "right", "missing values (before imputation they were filled)"),
                                     ("suggestion", "left", "why the sensor is suggested or left out"))) + "</tr>")
        rows = []
        for i in order:
            name = names[i]
            r = summ.iloc[i]
            steps = max(int(r["increase"] + r["decrease"] + r["equal"]), 1)
            mark = "✓" if name in keep else "&nbsp;"
            dot = "●" if name in in_model else "○"
            why = str(reason[name]) if reason is not None else ""
            colour = sensor_colour(i)
            spark = (f"<svg width='{SPARK_W}' height='{SPARK_H}' viewBox='0 0 {10 * SPARK_W} {10 * SPARK_H}' "
                     f"style='vertical-align:middle'>"
                     f"<polyline points='{points[i]}' fill='none' stroke='{colour}' stroke-width='13'/></svg>"
                     if points[i] else "–")
            rel = r["max_rate_relative"]
            row_colour = text if name in keep or sg is None else muted
            rows.append(
                f"<tr style='color:{row_colour}'>"
                f"<td style='padding:1px 6px;white-space:nowrap' title='{html.escape(name)}'>"
                f"<b style='color:#2ca02c'>{mark}</b> <span style='color:{muted}'>{dot}</span> "
                f"{html.escape(name)}</td>"
                f"<td style='padding:1px 6px'>{spark}</td>"
                f"<td style='padding:1px 6px;text-align:right;white-space:nowrap'>"
                f"{r['increase'] / steps:.0%} / {r['decrease'] / steps:.0%} / {r['equal'] / steps:.0%}</td>"
                f"<td style='padding:1px 6px;text-align:right;white-space:nowrap'>{_fmt(r['max_rate'])}"
                f" <span style='color:{muted}'>({_fmt(rel, 2)}×)</span></td>"
                f"<td style='padding:1px 6px;text-align:right;white-space:nowrap'>"
                f"{int(r['growth']):,} / {int(r['decay']):,}</td>"
                f"<td style='padding:1px 6px;white-space:nowrap'>{_moves_with(r, muted)}</td>"
                f"<td style='padding:1px 6px;text-align:right'>{int(r['n_missing']):,}</td>"
                f"<td style='padding:1px 6px;white-space:nowrap'>{html.escape(why)}</td></tr>")
        self.table.value = (f"<table style='border-collapse:collapse;font-size:12px;color:{text}'>"
                            f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")

    def _render_matrix(self) -> None:
        prof = self.state.profile
        attribute, diverging = MATRICES[self.matrix.value]
        if prof is None:
            return
        matrix = getattr(prof, attribute).to_numpy(dtype=np.float64)
        p = self.palette
        self.heatmap_colours.colors = list(p.diverging) if diverging else \
            (_SEQUENTIAL_DARK if p.dark else _SEQUENTIAL)
        self._syncing = True
        try:
            self.heatmap.selected = None
            drawn = _set_heatmap(self.heatmap, self.heatmap_colours, matrix, list(prof.sensors),
                                 list(prof.sensors), diverging)
            if diverging:  # a correlation's range is [-1, 1] whatever the data
                self.heatmap_colours.min, self.heatmap_colours.max, self.heatmap_colours.mid = -1.0, 1.0, 0.0
        finally:
            self._syncing = False
        longest = max((len(n) for n in prof.sensors), default=4)
        room = int(min(240, 24 + 6.5 * longest))   # the sensor names beside and below the cells
        self.heatmap_figure.fig_margin = dict(top=40, bottom=int(min(200, 16 + 4.8 * longest)), left=room, right=20)
        self.heatmap_figure.title = f"Between sensors: {self.matrix.value}" if drawn else \
            "Between sensors: needs at least two sensors"

    def _on_pair_state(self, _change: Any = None) -> None:
        s = self.state
        pair = tuple(s.profile_pair)
        series = s.profile_pair_correlation
        self._syncing = True
        try:
            if len(pair) == 2:
                with self.pair_a.hold_sync(), self.pair_b.hold_sync():
                    if pair[0] in self.pair_a.options:
                        self.pair_a.value = pair[0]
                    if pair[1] in self.pair_b.options:
                        self.pair_b.value = pair[1]
        finally:
            self._syncing = False
        if series is None or len(pair) != 2:
            with self.pair_line.hold_sync():
                self.pair_line.x, self.pair_line.y = np.empty(0), np.empty(0)
            self.pair_figure.title = "Rolling correlation"
            return
        axis = TimeAxis(series.index)
        y = series.to_numpy(dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(y))
        keep = finite[downsample(None if axis.uniform else axis.key[finite], y[finite], MAX_POINTS)] \
            if len(finite) else finite
        scale = self.date_scale if axis.is_datetime else self.linear_scale
        x = axis.display[keep]
        ends = axis.display[[0, -1]] if len(axis.display) else axis.display
        with self.pair_line.hold_sync(), self.zero_line.hold_sync():
            if self.pair_line.scales["x"] is not scale:
                self.pair_line.scales = {"x": scale, "y": self.r_scale}
                self.zero_line.scales = {"x": scale, "y": self.r_scale}
                self.pair_x_axis.scale = scale
            self.pair_line.x, self.pair_line.y = x, y[keep]
            self.zero_line.x, self.zero_line.y = ends, np.zeros(len(ends))
        prof = s.profile
        w = prof.window if prof is not None else ""
        self.pair_figure.title = f"Rolling correlation ({w}-row window): {pair[0]} × {pair[1]}"


def _moves_with(r: Any, muted: str) -> str:
    """The "moves with" cell of a summary row: ``pressure (93%)`` for a same-way partner,
    ``against humidity (94%)`` for an opposite-way one, "–" without a partner."""
    partner = str(r["moves_with"])
    if not partner:
        return "–"
    against = f"<i style='color:{muted}'>against</i> " if r["relation"] == "opposite" else ""
    return f"{against}{html.escape(partner)} <span style='color:{muted}'>({_fmt_pct(r['agreement'])})</span>"


def _fmt_pct(v: Any) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.0%}" if np.isfinite(v) else "–"
