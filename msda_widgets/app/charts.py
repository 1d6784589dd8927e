"""bqplot views of :class:`~msda_widgets.app.state.AppState`: timeline, loss curve, score histogram.

Each view observes the state and calls the controller; none of them calls the engine or writes
the state. Data reach bqplot as numpy arrays (binary buffers), multi-field updates are made
inside ``mark.hold_sync()``, and long series are downsampled with tsdownsample's MinMaxLTTB to
about :data:`MAX_POINTS` points per line, re-sampled for the visible range on pan and zoom.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
from typing import Any, Callable, Optional

import bqplot as bq
from bqplot.interacts import BrushIntervalSelector, IndexSelector
from bqscales.traits import Date as _BQDate
from traitlets import TraitType
import ipywidgets as widgets
import numpy as np
import pandas as pd

from .theme import Palette, palette, style_figure

__all__ = ["Timeline", "LossCurve", "ScoreHistogram", "downsample", "PALETTE", "MAX_POINTS",
           "MAX_FLAGGED", "Debouncer", "TimeAxis", "UTCDateScale"]

log = logging.getLogger(__name__)

#: Points drawn per line (sensor or score), whatever the number of rows.
MAX_POINTS = 2000
#: Flagged points drawn at most (the highest-scored ones in view).
MAX_FLAGGED = 5000
#: Seconds to wait after the last pan/zoom/selector event before acting on it.
DEBOUNCE_S = 0.15
#: Sensor colours (category20-like), in sensor order.
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
           "#aec7e8", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79",
           "#637939", "#8c6d31", "#843c39", "#7b4173")
ANOMALY = "#d62728"
NORMAL = "#4c78a8"
BRUSHED = "#ff7f0e"
LABEL_BAND = "#9e9e9e"
LEGEND_MAX = 12       # more sensors than this: no legend (it would cover the chart)
MAX_LABEL_SPANS = 2000
MAX_EPOCH_TICKS = 12  # loss curve: one tick per epoch up to this many epochs
#: Tooltip time format. bqplot's tooltips accept only time formats whose directives are
#: separated by spaces, "-", "/" or "*" (``utils.is_valid_time_format``); anything else, e.g.
#: "%H:%M", is taken for a number format and the tooltip view fails to render. "%c" is the
#: locale's date and time ("1/1/2024, 12:00:00 AM"), shown in UTC like the axis.
_DATE_FORMAT = "%c"


def _utc_to_json(value: Any, obj: Any) -> Optional[str]:
    # naive datetimes here are UTC-based like the data arrays bqplot sends as epoch milliseconds;
    # the "Z" makes the browser read them as UTC too (bqscales' own format has no zone, which
    # JavaScript reads as local time, shifting a zoom set from Python by the browser's offset)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _utc_from_json(value: Any, obj: Any) -> Optional[_dt.datetime]:
    if not value:
        return None
    text = str(value).rstrip("Z")
    return _dt.datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f" if "." in text else "%Y-%m-%dT%H:%M:%S")


class _UTCDate(_BQDate):
    def __init__(self, default_value: Any = None, **kwargs: Any) -> None:
        TraitType.__init__(self, default_value=default_value, **kwargs)
        self.tag(to_json=_utc_to_json, from_json=_utc_from_json)


class UTCDateScale(bq.DateScale):
    """bqplot's DateScale whose min/max travel to the browser as UTC (see :func:`_utc_to_json`)."""

    min = _UTCDate(allow_none=True).tag(sync=True)
    max = _UTCDate(allow_none=True).tag(sync=True)


def sensor_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def downsample(x: Optional[np.ndarray], y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    """Indices (ascending, int64) of at most ``n_out`` points of ``y`` that keep its shape.

    MinMaxLTTB (tsdownsample): min/max preselection, then largest-triangle-three-buckets. ``x``
    must be monotonic (int64 nanoseconds for times); pass ``None`` for evenly spaced rows (about
    ten times faster: no search for the bucket edges). ``y`` must be finite. Short series are
    returned whole.
    """
    n = len(y)
    if n <= n_out:
        return np.arange(n, dtype=np.int64)
    from tsdownsample import MinMaxLTTBDownsampler  # ~70 ms; only when there is something to thin
    y = np.ascontiguousarray(y)
    args = (y,) if x is None else (np.ascontiguousarray(x), y)
    idx = MinMaxLTTBDownsampler().downsample(*args, n_out=max(int(n_out), 3))
    return np.asarray(idx, dtype=np.int64)


class Debouncer:
    """Call ``func`` once, ``delay`` seconds after the last :meth:`__call__` (0: at once).

    Runs on a :class:`threading.Timer`; exceptions are logged (a timer thread has nobody to
    raise to). :meth:`flush` runs a pending call now (tests, shutdown).
    """

    def __init__(self, func: Callable[[], None], delay: float = DEBOUNCE_S) -> None:
        self.func = func
        self.delay = delay
        self._timer: Optional[threading.Timer] = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.delay <= 0:
            self._run()
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay, self._run)
            self._timer.daemon = True
            self._timer.start()

    @property
    def pending(self) -> bool:
        return self._timer is not None

    def flush(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self._run()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.func()
        except Exception:  # noqa: BLE001 - a timer thread cannot raise to anyone
            log.exception("msda_widgets: debounced update failed")


class TimeAxis:
    """The x coordinates of a prepared index, in the three forms the timeline needs.

    ``key``: strictly increasing numbers for downsampling (UTC nanoseconds for times, else the
    index values or row numbers); ``display``: what bqplot draws (``datetime64[ns]`` wall-clock
    time, or float); ``search``: a non-decreasing numeric version of ``display`` for turning a
    visible x range into rows.
    """

    def __init__(self, index: pd.Index) -> None:
        self.tz = None
        if isinstance(index, pd.DatetimeIndex):
            self.is_datetime = True
            self.tz = index.tz
            self.key = np.asarray(index.as_unit("ns").asi8, dtype=np.int64)
            wall = index.tz_localize(None) if index.tz is not None else index
            wall_ns = np.asarray(wall.as_unit("ns").asi8, dtype=np.int64)
            self.display = wall_ns.view("datetime64[ns]")
            self.search = np.maximum.accumulate(wall_ns) if len(wall_ns) else wall_ns
        else:
            self.is_datetime = False
            try:
                key = np.asarray(index, dtype=np.float64)
            except (TypeError, ValueError):
                key = np.arange(len(index), dtype=np.float64)
            if len(key) > 1 and not (np.all(np.isfinite(key)) and np.all(np.diff(key) > 0)):
                key = np.arange(len(index), dtype=np.float64)
            self.key = key
            self.display = key
            self.search = key

        steps = np.diff(self.key)
        #: evenly spaced rows: downsample by position (same result, much faster)
        self.uniform = bool(len(steps) == 0 or np.all(steps == steps[0]))

    def __len__(self) -> int:
        return len(self.key)

    def sample_x(self, i0: int, i1: int) -> Optional[np.ndarray]:
        """The x to downsample rows ``[i0, i1)`` against (None when evenly spaced)."""
        return None if self.uniform else self.key[i0:i1]

    # -- conversions between a view-range value and the search coordinate ------------------
    def to_search(self, value: Any) -> Optional[float]:
        """A view-range end (Timestamp, datetime, datetime64, string, number) -> search number."""
        if value is None:
            return None
        if self.is_datetime:
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                return float(value)  # already nanoseconds
            ts = pd.Timestamp(value)
            if ts.tzinfo is not None:
                ts = ts.tz_convert(self.tz).tz_localize(None) if self.tz is not None else ts.tz_localize(None)
            return float(ts.as_unit("ns").value)
        return float(value)

    def to_state(self, value: Any) -> Any:
        """A scale min/max (datetime or float) -> what the controller's view range holds."""
        if self.is_datetime:
            ts = pd.Timestamp(value)
            if self.tz is not None and ts.tzinfo is None:
                ts = ts.tz_localize(self.tz, ambiguous=True, nonexistent="shift_forward")
            return ts
        return float(value)

    def to_scale(self, value: Any) -> Any:
        """A view-range end -> a value for the x scale's min/max."""
        s = self.to_search(value)
        if s is None:
            return None
        if self.is_datetime:
            return pd.Timestamp(int(s)).to_pydatetime(warn=False)
        return float(s)

    def rows(self, view_range: Any) -> tuple[int, int]:
        """Rows ``[i0, i1)`` that cover a view range, one row of margin each side."""
        n = len(self.key)
        if view_range is None or n == 0:
            return 0, n
        try:
            lo, hi = (self.to_search(v) for v in view_range)
        except (TypeError, ValueError):  # a range in other units (e.g. times, after switching to rows)
            return 0, n
        if lo is None or hi is None:
            return 0, n
        lo, hi = min(lo, hi), max(lo, hi)
        i0 = max(int(np.searchsorted(self.search, lo, side="left")) - 1, 0)
        i1 = min(int(np.searchsorted(self.search, hi, side="right")) + 1, n)
        if i1 - i0 < 2:  # zoomed between two rows: keep the two around it
            i0, i1 = max(min(i0, n - 2), 0), min(max(i1, i0 + 2), n)
        return i0, i1


def _empty_x(is_datetime: bool) -> np.ndarray:
    return np.empty(0, dtype="datetime64[ns]" if is_datetime else np.float64)


def _label_spans(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of True in a bool array: (first row, last row) of each."""
    lab = np.asarray(labels, dtype=bool)
    if not lab.any():
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    edges = np.diff(np.concatenate([[0], lab.view(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return starts, ends


class Timeline:
    """The sensors (each scaled to [0, 1]), the anomaly score, the threshold and the flagged points.

    Mode "click points" (the default): click a red point to explain it (``controller.select``).
    Mode "pan & zoom": drag to pan and scroll to zoom (the visible range goes to
    ``controller.set_view_range`` and the lines are re-sampled for it). Two modes because bqplot
    puts the pan/zoom layer above the marks, where it takes every mouse event.
    """

    def __init__(self, state: Any, controller: Any, *, max_points: int = MAX_POINTS,
                 max_flagged: int = MAX_FLAGGED, debounce_s: float = DEBOUNCE_S,
                 theme: "str | Palette" = "light") -> None:
        self.state = state
        self.palette = palette(theme)
        self.controller = controller
        self.max_points = int(max_points)
        self.max_flagged = int(max_flagged)
        self._lock = threading.RLock()
        self._syncing = False
        self.axis: Optional[TimeAxis] = None
        self._lo = np.zeros(0)
        self._span = np.ones(0)
        self.rows = (0, 0)                                   # visible rows [i0, i1)
        self.flagged_positions = np.empty(0, dtype=np.int64)  # scatter index -> prepared row
        self.flagged_in_view = 0                              # flagged rows in view (before the cap)
        self.brushed_positions = np.empty(0, dtype=np.int64)
        self.brushed_in_view = 0
        self.resamples = 0                                    # how often the lines were re-sampled
        self._push_range = Debouncer(self._push_view_range, debounce_s)

        self.date_scale = UTCDateScale()
        self.linear_scale = bq.LinearScale()
        self.x_scale: Any = self.date_scale
        self.y_sensors = bq.LinearScale(min=-0.02, max=1.02)
        self.y_score = bq.LinearScale(min=0.0)
        self.y_band = bq.LinearScale(min=0.0, max=1.0)
        xs = self.x_scale

        self.label_band = bq.Lines(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_band}, fill="bottom",
            colors=[LABEL_BAND], fill_colors=[LABEL_BAND], fill_opacities=[0.2], stroke_width=0.0,
            labels=["true anomaly (label)"], enable_hover=False, interactions={}, visible=False)
        self.sensor_lines = bq.Lines(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_sensors}, stroke_width=1.0,
            colors=list(PALETTE[:1]), labels=[], display_legend=True, enable_hover=False, interactions={})
        self.score_line = bq.Lines(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_score}, colors=[self.palette.score],
            stroke_width=1.5, labels=["anomaly score"], enable_hover=False, interactions={})
        self.threshold_line = bq.Lines(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_score}, colors=[ANOMALY],
            stroke_width=1.5, line_style="dashed", labels=["threshold"], enable_hover=False, interactions={})
        self.brushed = bq.Scatter(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_score}, colors=[BRUSHED],
            marker="square", default_size=14, opacities=np.array([0.8]), enable_hover=False, interactions={})
        self.point_tooltip = bq.Tooltip(fields=["x", "y"], labels=["time", "score"],
                                        formats=[_DATE_FORMAT, ".4g"])
        self.flagged = bq.Scatter(
            x=_empty_x(True), y=np.empty(0), scales={"x": xs, "y": self.y_score}, colors=[ANOMALY],
            default_size=40, stroke=self.palette.marker_stroke, tooltip=self.point_tooltip,
            interactions={"hover": "tooltip", "click": "tooltip"},
            selected_style={"fill": "gold", "stroke": "black", "stroke-width": "3", "opacity": "1"},
            unselected_style={"opacity": "0.55"})
        self.flagged.on_element_click(self._on_point_click)

        self.x_axis = bq.Axis(scale=xs, label="time", grid_lines="none")
        self.y_axis = bq.Axis(scale=self.y_sensors, side="left", label="sensors (each 0–1)",
                              tick_format=".1f", grid_lines="none")
        self.score_axis = bq.Axis(scale=self.y_score, side="right",
                                  label="anomaly score", grid_lines="dashed", tick_format=".3g")
        self.panzoom = bq.PanZoom(scales={"x": [xs]})
        self.figure = bq.Figure(
            marks=[self.label_band, self.sensor_lines, self.score_line, self.threshold_line, self.brushed,
                   self.flagged],
            axes=[self.x_axis, self.y_axis, self.score_axis], interaction=None,
            legend_location="top-left", animation_duration=0,
            fig_margin=dict(top=20, bottom=40, left=55, right=65),
            layout=widgets.Layout(width="100%", height="360px"))
        self.figure.add_class("msda-timeline")
        style_figure(self.figure, self.palette)
        self.show_all = widgets.Button(
            description="Show all", icon="expand", layout=widgets.Layout(width="110px"),
            tooltip="Zoom back out to the whole time range (in 'pan & zoom' mode you can drag the chart "
                    "to move it and scroll on it to zoom in).")
        self.show_all.on_click(lambda _b: self.controller.set_view_range(None, None))
        # bqplot draws a figure's interaction layer above its marks, so while PanZoom is on, the
        # points get no mouse events (no click, no hover tooltip): one mode at a time.
        self.mode = widgets.ToggleButtons(
            options=[("click points", "select"), ("pan & zoom", "zoom")], value="select",
            tooltips=["Click a red point to see why it was flagged; hover over it for its time and score.",
                      "Drag the chart to move along the time axis; scroll on it to zoom in and out."],
            tooltip="What the mouse does on the timeline: explain the red points, or move and zoom.",
            style={"button_width": "100px"})
        self.mode.observe(self._on_mode, names="value")
        self.mode.add_class("msda-timeline-mode")
        self.caption = widgets.HTML()
        self.widget = widgets.VBox(
            [self.figure, widgets.HBox([self.mode, self.show_all, self.caption],
                                       layout=widgets.Layout(align_items="center"))],
            layout=widgets.Layout(width="100%"))

        for scale in (self.date_scale, self.linear_scale):
            scale.observe(self._on_scale, names=["min", "max"])
        state.observe(self._on_series, names="series")
        state.observe(self._on_results, names="results")
        state.observe(self._on_flags, names="flags")
        state.observe(self._on_threshold, names="threshold")
        state.observe(self._on_selected, names="selected")
        state.observe(self._on_brush, names="brush")
        state.observe(self._on_view_range, names="view_range")
        state.observe(lambda _ch: self._draw_labels_locked(), names="reveal_truth")  # classroom switch
        self._on_series()

    # -- state -> chart --------------------------------------------------------------------------
    def _on_series(self, change: Any = None) -> None:
        with self._lock:
            series = self.state.series
            if series is None:
                self.axis = None
                self._clear()
                return
            self.axis = TimeAxis(series.index)
            values = series.values
            if len(values):
                lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            else:
                lo = hi = np.zeros(values.shape[1])
            span = hi - lo
            self._lo, self._span = lo, np.where(span > 0, span, np.nan)  # constant sensor -> 0.5
            self._use_scale(self.date_scale if self.axis.is_datetime else self.linear_scale)
            self._sync_scale_range()
            self._draw_labels()
            self._draw_all()

    def _on_results(self, change: Any = None) -> None:
        with self._lock:
            if self.axis is not None:
                self._draw_score()
                self._draw_threshold()
                self._draw_flagged()
                self._draw_brushed()

    def _on_flags(self, change: Any = None) -> None:
        with self._lock:
            self._draw_flagged()

    def _on_threshold(self, change: Any = None) -> None:
        with self._lock:
            self._draw_threshold()

    def _on_selected(self, change: Any = None) -> None:
        with self._lock:
            self._highlight_selected()

    def _on_brush(self, change: Any = None) -> None:
        with self._lock:
            self._draw_brushed()

    def _on_view_range(self, change: Any = None) -> None:
        with self._lock:
            if self.axis is None:
                return
            self._sync_scale_range()
            self._draw_all()

    # -- drawing ------------------------------------------------------------------------------
    def _use_scale(self, scale: Any) -> None:
        """Swap the x scale (DateScale <-> LinearScale) on every mark, the axis and the pan/zoom."""
        if scale is self.x_scale:
            return
        self.x_scale = scale
        empty = _empty_x(scale is self.date_scale)
        for mark in (self.label_band, self.sensor_lines, self.score_line, self.threshold_line,
                     self.brushed, self.flagged):
            with mark.hold_sync():
                mark.x = empty
                mark.y = np.empty(0)
                mark.scales = {**mark.scales, "x": scale}
        self.x_axis.scale = scale
        self.x_axis.label = "time" if scale is self.date_scale else "row"
        self.panzoom.scales = {"x": [scale]}
        self.point_tooltip.formats = [_DATE_FORMAT if scale is self.date_scale else ".6g", ".4g"]

    def _sync_scale_range(self) -> None:
        """Set the x scale's min/max from ``state.view_range`` (None: fit the data)."""
        vr = self.state.view_range if self.axis is not None else None
        lo = hi = None
        if vr is not None:
            try:
                lo, hi = (self.axis.to_scale(v) for v in vr)
            except (TypeError, ValueError):
                lo = hi = None
        self._syncing = True
        try:
            with self.x_scale.hold_sync():
                self.x_scale.min = lo
                self.x_scale.max = hi
        finally:
            self._syncing = False

    def _clear(self) -> None:
        for mark in (self.label_band, self.sensor_lines, self.score_line, self.threshold_line,
                     self.brushed, self.flagged):
            with mark.hold_sync():
                mark.x = _empty_x(self.x_scale is self.date_scale)
                mark.y = np.empty(0)
        self.flagged.selected = None
        self.flagged_positions = np.empty(0, dtype=np.int64)
        self.brushed_positions = np.empty(0, dtype=np.int64)
        self.flagged_in_view = self.brushed_in_view = 0
        self.rows = (0, 0)
        self.caption.value = ""

    def _draw_all(self) -> None:
        if self.axis is None:
            self._clear()
            return
        self.rows = self.axis.rows(self.state.view_range)
        self.resamples += 1
        self._draw_sensors()
        self._draw_score()
        self._draw_threshold()
        self._draw_flagged()
        self._draw_brushed()

    def _draw_sensors(self) -> None:
        series, axis = self.state.series, self.axis
        i0, i1 = self.rows
        key = axis.sample_x(i0, i1)
        n_s = series.values.shape[1]
        rows = []
        for j in range(n_s):
            rows.append(downsample(key, series.values[i0:i1, j], self.max_points) + i0)
        width = max((len(r) for r in rows), default=0)
        # every line the same length (a 2-D array); a short one repeats its last point
        idx = np.array([np.pad(r, (0, width - len(r)), mode="edge") if len(r) else np.full(width, i0)
                        for r in rows], dtype=np.int64).reshape(n_s, width)
        cols = np.arange(n_s)[:, None]
        with np.errstate(invalid="ignore"):
            y = (series.values[idx, cols] - self._lo[:, None]) / self._span[:, None]
        y = np.where(np.isnan(self._span)[:, None], 0.5, y)
        names = list(series.sensors)
        with self.sensor_lines.hold_sync():
            self.sensor_lines.x = axis.display[idx]
            self.sensor_lines.y = y
            self.sensor_lines.colors = [sensor_colour(j) for j in range(n_s)]
            self.sensor_lines.labels = names
            self.sensor_lines.display_legend = n_s <= LEGEND_MAX
        shown = width if n_s else 0
        text = (f"{series.n_rows:,} rows × {n_s} sensors · rows {i0 + 1:,}–{i1:,} in view · "
                f"{shown:,} points per line")
        self._caption_base = text
        self._update_caption()

    def _draw_score(self) -> None:
        results, axis = self.state.results, self.axis
        if results is None or len(results.scores) != len(axis):
            with self.score_line.hold_sync():
                self.score_line.x = _empty_x(axis.is_datetime)
                self.score_line.y = np.empty(0)
            return
        i0, i1 = self.rows
        scores = results.scores[i0:i1]
        finite = np.flatnonzero(np.isfinite(scores))
        contiguous = len(finite) == 0 or finite[-1] - finite[0] + 1 == len(finite)
        x = None if axis.uniform and contiguous else axis.key[i0:i1][finite]
        pick = finite[downsample(x, scores[finite], self.max_points)] + i0
        with self.score_line.hold_sync():
            self.score_line.x = axis.display[pick]
            self.score_line.y = np.asarray(results.scores[pick], dtype=np.float64)

    def _draw_threshold(self) -> None:
        axis, thr = self.axis, self.state.threshold
        if axis is None or self.state.results is None or not np.isfinite(thr) or len(axis) == 0:
            x, y = _empty_x(axis is None or axis.is_datetime), np.empty(0)
        else:
            x = axis.display[[0, len(axis) - 1]]
            y = np.array([thr, thr], dtype=np.float64)
        with self.threshold_line.hold_sync():
            self.threshold_line.x = x
            self.threshold_line.y = y

    def _draw_flagged(self) -> None:
        axis, results, flags = self.axis, self.state.results, self.state.flags
        if axis is None or results is None or flags is None or len(flags) != len(axis):
            positions = np.empty(0, dtype=np.int64)
            self.flagged_in_view = 0
        else:
            i0, i1 = self.rows
            positions = np.flatnonzero(flags[i0:i1]) + i0
            self.flagged_in_view = len(positions)
            if len(positions) > self.max_flagged:
                top = np.argpartition(-results.scores[positions], self.max_flagged - 1)[:self.max_flagged]
                positions = np.sort(positions[top])
        self.flagged_positions = positions.astype(np.int64)
        with self.flagged.hold_sync():
            self.flagged.selected = None
            if axis is None or results is None:
                self.flagged.x = _empty_x(axis is None or axis.is_datetime)
                self.flagged.y = np.empty(0)
            else:
                self.flagged.x = axis.display[positions]
                self.flagged.y = np.asarray(results.scores[positions], dtype=np.float64)
        self._highlight_selected()
        self._update_caption()

    def _highlight_selected(self) -> None:
        pos = self.state.selected
        k = np.searchsorted(self.flagged_positions, pos) if pos >= 0 else len(self.flagged_positions)
        if k < len(self.flagged_positions) and self.flagged_positions[k] == pos:
            self.flagged.selected = np.array([k], dtype=np.int64)
        else:
            self.flagged.selected = None

    def _draw_brushed(self) -> None:
        axis, results, brush = self.axis, self.state.results, self.state.brush
        if axis is None or results is None or brush is None or len(results.scores) != len(axis):
            positions = np.empty(0, dtype=np.int64)
            self.brushed_in_view = 0
        else:
            lo, hi = float(min(brush)), float(max(brush))
            i0, i1 = self.rows
            s = results.scores[i0:i1]
            with np.errstate(invalid="ignore"):
                positions = np.flatnonzero((s >= lo) & (s <= hi)) + i0
            self.brushed_in_view = len(positions)
            if len(positions) > self.max_flagged:  # an even sample keeps the shape of the crowd
                positions = positions[np.linspace(0, len(positions) - 1, self.max_flagged).astype(np.int64)]
        self.brushed_positions = positions
        with self.brushed.hold_sync():
            if axis is None or results is None:
                self.brushed.x = _empty_x(axis is None or axis.is_datetime)
                self.brushed.y = np.empty(0)
            else:
                self.brushed.x = axis.display[positions]
                self.brushed.y = np.asarray(results.scores[positions], dtype=np.float64)
        self._update_caption()

    def _draw_labels_locked(self) -> None:
        with self._lock:
            self._draw_labels()

    def _draw_labels(self) -> None:
        series, axis = self.state.series, self.axis
        labels = getattr(series, "labels", None)
        if not getattr(self.state, "reveal_truth", True):  # classroom: hidden -> no data in the page either
            labels = None
        if labels is None or axis is None or len(labels) != len(axis) or not np.any(labels):
            with self.label_band.hold_sync():
                self.label_band.x = _empty_x(axis is None or axis.is_datetime)
                self.label_band.y = np.empty(0)
                self.label_band.visible = False
            return
        starts, ends = _label_spans(labels)
        if len(starts) > MAX_LABEL_SPANS:
            keep = np.linspace(0, len(starts) - 1, MAX_LABEL_SPANS).astype(np.int64)
            starts, ends = starts[keep], ends[keep]
        n = len(axis)
        stops = np.minimum(ends + 1, n - 1)  # a one-row span still gets a width
        stops = np.where(stops == starts, ends, stops)
        # each span is a box: (start, 0) (start, 1) (stop, 1) (stop, 0)
        rows = np.stack([starts, starts, stops, stops], axis=1).ravel()
        y = np.tile(np.array([0.0, 1.0, 1.0, 0.0]), len(starts))
        with self.label_band.hold_sync():
            self.label_band.x = axis.display[rows]
            self.label_band.y = y
            self.label_band.visible = True

    def _update_caption(self) -> None:
        base = getattr(self, "_caption_base", "")
        parts = [base] if base else []
        if self.state.results is not None:
            shown = len(self.flagged_positions)
            if self.flagged_in_view > shown:
                parts.append(f"<b>{shown:,} highest-scored of {self.flagged_in_view:,} flagged points in "
                             f"view</b> (zoom in to see the rest)")
            else:
                parts.append(f"{shown:,} flagged points in view")
        if self.state.brush is not None:
            lo, hi = self.state.brush
            extra = (f" (an even sample of {len(self.brushed_positions):,} drawn)"
                     if self.brushed_in_view > len(self.brushed_positions) else "")
            parts.append(f"{self.brushed_in_view:,} rows with scores {lo:.3g}–{hi:.3g} in view{extra}")
        self.caption.value = (f"<span style='font-size:12px;color:{self.palette.muted}'>"
                              f"{' · '.join(parts)}</span>")
        self.point_tooltip.labels = ["time" if self.axis is None or self.axis.is_datetime else "row", "score"]

    # -- chart -> controller ---------------------------------------------------------------------
    def _on_mode(self, change: Any) -> None:
        self.figure.interaction = self.panzoom if change["new"] == "zoom" else None

    def _on_point_click(self, mark: Any, event: dict) -> None:
        try:
            k = int(event["data"]["index"])
        except (KeyError, TypeError, ValueError):
            return
        positions = self.flagged_positions
        if 0 <= k < len(positions):
            self.controller.select(int(positions[k]))

    def _on_scale(self, change: Any) -> None:
        if self._syncing or change["owner"] is not self.x_scale:
            return
        self._push_range()

    def _push_view_range(self) -> None:
        axis = self.axis
        lo, hi = self.x_scale.min, self.x_scale.max
        if axis is None or lo is None or hi is None:
            self.controller.set_view_range(None, None)
            return
        a, b = axis.to_state(lo), axis.to_state(hi)
        if b < a:
            a, b = b, a
        self.controller.set_view_range(a, b)


class LossCurve:
    """Training and validation loss per epoch, growing live while the model trains."""

    def __init__(self, state: Any, *, theme: "str | Palette" = "light") -> None:
        self.state = state
        xs, ys = bq.LinearScale(), bq.LinearScale()
        tip = bq.Tooltip(fields=["x", "y"], labels=["epoch", "loss"], formats=["d", ".4g"])
        self.train_line = bq.Lines(
            x=np.empty(0), y=np.empty(0), scales={"x": xs, "y": ys}, colors=[NORMAL], marker="circle",
            marker_size=24, labels=["training loss"], display_legend=True, tooltip=tip)
        self.val_line = bq.Lines(
            x=np.empty(0), y=np.empty(0), scales={"x": xs, "y": ys}, colors=[BRUSHED], marker="square",
            marker_size=24, labels=["validation loss"], display_legend=True, tooltip=tip)
        self.epoch_axis = bq.Axis(scale=xs, label="epoch", tick_format="d", grid_lines="none")
        self.figure = bq.Figure(
            marks=[self.train_line, self.val_line],
            axes=[self.epoch_axis,
                  bq.Axis(scale=ys, side="left", label="loss (MSE)", tick_format=".2g",
                          grid_lines="dashed")],
            title="Training loss", legend_location="top-right", animation_duration=0,
            fig_margin=dict(top=40, bottom=40, left=60, right=20),
            layout=widgets.Layout(width="100%", height="260px"))
        self.figure.add_class("msda-loss")
        style_figure(self.figure, theme)
        self.widget = self.figure
        state.observe(self._update, names="history")
        self._update()

    def _update(self, change: Any = None) -> None:
        history = self.state.history or ()
        arr = np.array([[float(v) if v is not None else np.nan for v in row[:3]] for row in history],
                       dtype=np.float64).reshape(-1, 3)
        epoch, train, val = arr[:, 0], arr[:, 1], arr[:, 2]
        ok_t, ok_v = np.isfinite(train), np.isfinite(val)
        with self.train_line.hold_sync():
            self.train_line.x = epoch[ok_t]
            self.train_line.y = train[ok_t]
        with self.val_line.hold_sync():
            self.val_line.x = epoch[ok_v]
            self.val_line.y = val[ok_v]
            self.val_line.visible = bool(ok_v.any())
        # whole epochs only: on a short run d3 picks ticks like 1.5, which "d" prints as "2"
        finite = epoch[np.isfinite(epoch)]
        if len(finite) and finite.max() - finite.min() <= MAX_EPOCH_TICKS:
            ticks = np.arange(np.floor(finite.min()), np.floor(finite.max()) + 1, dtype=np.float64)
        else:
            ticks = None if len(finite) else np.array([0.0, 1.0])
        self.epoch_axis.tick_values = ticks


class ScoreHistogram:
    """Histogram of the anomaly scores; bars above the threshold in red.

    Mode "brush": drag over the bars to highlight those rows on the timeline
    (``controller.set_brush``). Mode "set threshold": point at a score and click to fix the
    threshold there (``controller.set_threshold("fixed", value)``).
    """

    def __init__(self, state: Any, controller: Any, *, debounce_s: float = DEBOUNCE_S,
                 theme: "str | Palette" = "light") -> None:
        self.state = state
        self.controller = controller
        self._syncing = False
        self._preview: Optional[float] = None
        self._send_threshold = Debouncer(self._push_threshold, debounce_s)
        self.centres = np.empty(0)
        self.x_scale = bq.LinearScale()
        self.y_scale = bq.LinearScale(min=0.0)
        self.colour_scale = bq.ColorScale(colors=[NORMAL, ANOMALY], min=0.0, max=1.0)
        self.bars = bq.Bars(
            x=np.empty(0), y=np.empty(0), color=np.empty(0),
            scales={"x": self.x_scale, "y": self.y_scale, "color": self.colour_scale}, padding=0.05,
            tooltip=bq.Tooltip(fields=["x", "y"], labels=["score", "rows"], formats=[".3g", "d"]))
        self.threshold_line = bq.Lines(
            x=np.empty(0), y=np.empty(0), scales={"x": self.x_scale, "y": self.y_scale}, colors=[ANOMALY],
            stroke_width=2.0, line_style="dashed", labels=["threshold"], enable_hover=False, interactions={})
        self.brush = BrushIntervalSelector(scale=self.x_scale, color=BRUSHED)
        self.picker = IndexSelector(scale=self.x_scale, color=ANOMALY, line_width=2)
        self.figure = bq.Figure(
            marks=[self.bars, self.threshold_line],
            axes=[bq.Axis(scale=self.x_scale, label="anomaly score", tick_format=".3g", grid_lines="none"),
                  bq.Axis(scale=self.y_scale, side="left", label="rows", tick_format="d",
                          grid_lines="dashed")],
            interaction=self.brush, title="How the scores are spread", animation_duration=0,
            fig_margin=dict(top=40, bottom=40, left=60, right=20),
            layout=widgets.Layout(width="100%", height="260px"))
        self.mode = widgets.ToggleButtons(
            options=[("brush", "brush"), ("set threshold", "threshold")], value="brush",
            tooltips=["Drag over the bars to light up those rows on the timeline.",
                      "Move over the chart and click to put the threshold at that score."],
            tooltip="Choose what dragging or clicking on the histogram does.",
            style={"button_width": "110px"})
        self.info = widgets.HTML()
        self.figure.add_class("msda-histogram")
        style_figure(self.figure, theme)
        self.widget = widgets.VBox([self.figure, widgets.HBox([self.mode, self.info])],
                                   layout=widgets.Layout(width="100%"))

        self.mode.observe(self._on_mode, names="value")
        self.brush.observe(self._on_brush_selected, names="selected")
        self.brush.observe(self._on_brushing, names="brushing")
        self.picker.observe(self._on_pick, names="selected")
        state.observe(self._on_results, names="results")
        state.observe(self._on_threshold, names="threshold")
        state.observe(self._on_state_brush, names="brush")
        self._on_results()

    # -- state -> chart --------------------------------------------------------------------------
    def _on_results(self, change: Any = None) -> None:
        results = self.state.results
        if results is None or len(results.histogram[0]) == 0:
            counts, centres = np.empty(0), np.empty(0)
        else:
            counts, edges = results.histogram
            counts = np.asarray(counts, dtype=np.float64)
            edges = np.asarray(edges, dtype=np.float64)
            centres = 0.5 * (edges[:-1] + edges[1:])
        self.centres = centres
        with self.bars.hold_sync():
            self.bars.x = centres
            self.bars.y = counts
            self.bars.color = self._colours(self.state.threshold)
        self._draw_threshold(self.state.threshold)
        self._update_info()

    def _on_threshold(self, change: Any = None) -> None:
        self._preview = None
        self._recolour(self.state.threshold)
        self._update_info()

    def _on_state_brush(self, change: Any = None) -> None:
        if self.state.brush is None and self.brush.selected is not None and len(self.brush.selected):
            self._syncing = True
            try:
                self.brush.selected = None
            finally:
                self._syncing = False
        self._update_info()

    def _colours(self, threshold: float) -> np.ndarray:
        if not np.isfinite(threshold):
            return np.zeros(len(self.centres))
        return (self.centres > threshold).astype(np.float64)

    def _recolour(self, threshold: float) -> None:
        self.bars.color = self._colours(threshold)
        self._draw_threshold(threshold)

    def _draw_threshold(self, threshold: float) -> None:
        results = self.state.results
        if results is None or not np.isfinite(threshold) or len(self.centres) == 0:
            x, y = np.empty(0), np.empty(0)
        else:
            top = float(np.max(results.histogram[0])) if len(results.histogram[0]) else 1.0
            x = np.array([threshold, threshold], dtype=np.float64)
            y = np.array([0.0, max(top, 1.0)], dtype=np.float64)
        with self.threshold_line.hold_sync():
            self.threshold_line.x = x
            self.threshold_line.y = y

    def _update_info(self) -> None:
        s = self.state
        parts = []
        if s.results is not None and np.isfinite(s.threshold):
            shown = self._preview if self._preview is not None else s.threshold
            parts.append(f"threshold <b>{shown:.4g}</b> · <b>{s.n_anomalies:,}</b> anomalies")
        if s.brush is not None:
            parts.append(f"brushed scores {s.brush[0]:.3g}–{s.brush[1]:.3g}")
        self.info.value = f"<span style='font-size:12px'>{' · '.join(parts)}</span>"

    # -- chart -> controller ---------------------------------------------------------------------
    def _on_mode(self, change: Any) -> None:
        self.figure.interaction = self.picker if change["new"] == "threshold" else self.brush

    def _on_brush_selected(self, change: Any) -> None:
        if self._syncing or self.brush.brushing:
            return  # wait for the drag to end
        self._push_brush()

    def _on_brushing(self, change: Any) -> None:
        if not change["new"] and not self._syncing:
            self._push_brush()

    def _push_brush(self) -> None:
        sel = self.brush.selected
        if sel is None or len(sel) < 2 or not np.all(np.isfinite(np.asarray(sel, dtype=float))) \
                or float(sel[0]) == float(sel[-1]):
            if self.state.brush is not None:
                self.controller.set_brush()
            return
        lo, hi = sorted((float(sel[0]), float(sel[-1])))
        self.controller.set_brush(lo, hi)

    def _on_pick(self, change: Any) -> None:
        sel = change["new"]
        if self._syncing or sel is None or len(sel) == 0 or self.state.results is None:
            return
        value = max(float(sel[0]), 0.0)  # the "fixed" method takes values >= 0
        self._preview = value
        self._recolour(value)            # bars follow the pointer at once
        self._update_info()
        self._send_threshold()

    def _push_threshold(self) -> None:
        value = self._preview
        if value is not None:
            self.controller.set_threshold("fixed", value)
