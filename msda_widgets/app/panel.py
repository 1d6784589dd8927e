"""The control panel: data, model, training, threshold and explanation settings.

Every control calls a :class:`~msda_widgets.app.controller.Controller` method; the panel shows
the state back (``AppState``). While it copies the state into its widgets a guard flag is set,
so those writes are not sent back to the controller (no feedback loops). A setting the
controller refuses leaves its message in the status line and the widget returns to the value
in force.
"""

from __future__ import annotations

import html
import math
import sys
from typing import Any, Callable, Optional

import ipywidgets as widgets

from ..config import DetectorConfig, IMPUTE_MODES
from ..engine import catalogue
from ..engine.thresholds import THRESHOLDS
from .metrics_view import MetricsView
from .theme import LIGHT, Palette, palette

__all__ = ["ControlPanel", "explain_methods", "model_choices", "BATCH_SIZES"]

BATCH_SIZES = (32, 64, 128, 256, 512, 1024)

#: Status line (text, background) per level, light theme (the palette has the dark ones).
LEVEL_COLOURS = dict(LIGHT.levels)
_NONE = ""  # dropdown value meaning "no column"
_AUTO = "auto"
_WIDE = widgets.Layout(width="98%")
_STYLE = {"description_width": "105px"}


def model_choices() -> list[tuple[str, str]]:
    """(label, name) of every model in the engine's torch-free catalogue, in catalogue order."""
    return [(m.label, m.name) for m in catalogue.models()]


def explain_methods(model: Optional[str] = None) -> dict[str, str]:
    """Explanation methods that serve ``model`` (a catalogue name; ``None``: every method):
    name -> description, from the engine's torch-free catalogue."""
    if model is None or model not in catalogue.MODEL_INFO:
        return {m.name: m.description for m in catalogue.methods()}
    return {m.name: m.description for m in catalogue.methods_for(model)}


def _fmt_numbers(values: Any) -> str:
    return ", ".join(f"{float(v):g}" for v in (values or ()))


def _parse_numbers(text: str, kind: Callable[[str], Any]) -> Any:
    """``"128, 64"`` -> ``(128, 64)``; the text itself when it is not a list of numbers (the
    controller then refuses it with a message that says why)."""
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        return text


def _int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _slider_range(name: str, results: Any, threshold: float) -> tuple[float, float, float]:
    """(min, max, step) of the threshold parameter slider for a method."""
    m = THRESHOLDS[name]
    low, high = float(m.low), float(m.high)
    if not math.isfinite(high):  # "fixed": up to a bit above the largest score seen
        top = 0.0
        if results is not None and len(results.histogram[1]):
            top = float(results.histogram[1][-1])
        if math.isfinite(threshold):
            top = max(top, threshold)
        high = max(top * 1.2, float(m.default) * 2, low + 1e-6)
    if not math.isfinite(low):
        low = 0.0
    step = (high - low) / 1000.0
    if low > 0 and high / low >= 1000:  # a wide range starting near 0 (POT's risk): fine steps
        step = low
    return low, high, step


def _set_slider(slider: widgets.FloatSlider, low: float, high: float, step: float, value: float) -> None:
    """Reconfigure a slider without tripping ipywidgets' min <= max check."""
    if low > slider.max:
        slider.max = high
        slider.min = low
    else:
        slider.min = low
        slider.max = high
    slider.step = step
    slider.value = min(max(value, low), high)


def make_upload_widget(max_bytes: int, tooltip: str) -> Any:
    """The "Open CSV" picker: :class:`~.widgets.UploadButton` (the browser refuses files above
    ``max_bytes`` before sending a byte, and sends the rest in chunks), or ipywidgets'
    ``FileUpload`` in a source checkout whose front-end was never built (then files near Voila's
    ~10 MB websocket limit can break the connection before Python can refuse them).
    """
    from .widgets import FrontendNotBuiltError, UploadButton
    try:
        return UploadButton(label="Open CSV", accept=".csv", max_bytes=int(max_bytes), description=tooltip,
                            layout=widgets.Layout(width="auto"))
    except FrontendNotBuiltError:
        return widgets.FileUpload(accept=".csv", multiple=False, description="Open CSV", icon="upload",
                                  layout=widgets.Layout(width="150px"), tooltip=tooltip)


class ControlPanel:
    """The left column of the dashboard. ``.widget`` is the ipywidgets container."""

    def __init__(self, state: Any, controller: Any, *, theme: "str | Palette" = "light") -> None:
        self.state = state
        self.controller = controller
        self.palette = palette(theme)
        self._syncing = False
        defaults = {**DetectorConfig().flat(), **(state.settings or {})}

        # -- status -------------------------------------------------------------------------
        self.status = widgets.HTML(layout=widgets.Layout(width="98%", min_height="40px"),
                                   tooltip="What the dashboard is doing, and what went wrong if something did.")

        # -- data ---------------------------------------------------------------------------
        self.data_info = widgets.HTML()
        limit = int(getattr(controller, "MAX_UPLOAD_BYTES", 10_000_000))
        upload_tip = (f"Open your own table of sensor readings (a .csv file, up to {limit / 1e6:.0f} MB). One "
                      "column per sensor, one row per time.")
        self.upload = make_upload_widget(limit, upload_tip)
        self.sensors = widgets.SelectMultiple(
            description="sensors", rows=6, layout=_WIDE, style=_STYLE,
            tooltip="The sensors the detector watches. Ctrl-click (Cmd-click on a Mac) to pick several.")
        self.time_column = widgets.Dropdown(
            description="time column", layout=_WIDE, style=_STYLE,
            tooltip="The column that says when each row was measured. 'auto' finds it; 'row order' "
                    "uses the row number instead.")
        self.label_column = widgets.Dropdown(
            description="label column", layout=_WIDE, style=_STYLE,
            tooltip="A column that marks the real anomalies (1 = anomaly), if your data has one. It is "
                    "only used to shade them on the timeline and to grade the detector, never for training.")
        self.impute = widgets.Dropdown(
            description="fill gaps", options=list(IMPUTE_MODES), layout=_WIDE, style=_STYLE,
            tooltip="How missing readings are filled in: with zero, the sensor's mean or median, the "
                    "previous (ffill) or next (bfill) reading, or a straight line between neighbours "
                    "(interpolate).")
        self.missing_values = widgets.Text(
            description="missing codes", placeholder="e.g. -200, -999", continuous_update=False,
            layout=_WIDE, style=_STYLE,
            tooltip="Numbers that mean 'no reading' in your file (some loggers write -200 or -999). "
                    "Separate several with commas; leave empty if there are none. Press Enter to apply.")
        self.data_box = widgets.VBox([
            self.data_info, self.upload, self.sensors, self.time_column, self.label_column, self.impute,
            self.missing_values])

        # -- model --------------------------------------------------------------------------
        self.model = widgets.Dropdown(
            description="model", options=model_choices(), layout=_WIDE, style=_STYLE,
            tooltip="DeepCNN learns to predict the next reading; the LSTM autoencoder learns to "
                    "redraw each window. Both flag what they get badly wrong.")
        self.lookback = widgets.IntSlider(
            description="lookback", min=4, max=100, continuous_update=False, layout=_WIDE, style=_STYLE,
            tooltip="How many past time steps the model sees at once (the window length).")
        self.kernel_size = widgets.IntSlider(
            description="kernel size", min=2, max=9, continuous_update=False, layout=_WIDE, style=_STYLE,
            tooltip="DeepCNN only: how many neighbouring time steps each filter looks at.")
        self.hidden_sizes = widgets.Text(
            description="hidden sizes", placeholder="128,64", continuous_update=False, layout=_WIDE,
            style=_STYLE,
            tooltip="LSTM autoencoder only: the size of each encoder layer, separated by commas "
                    "(the decoder mirrors them). Press Enter to apply.")
        self.dropout = widgets.FloatSlider(
            description="dropout", min=0.0, max=0.8, step=0.05, continuous_update=False, readout_format=".2f",
            layout=_WIDE, style=_STYLE,
            tooltip="Share of neurons switched off at random while training, so the model does not "
                    "learn the training data by heart.")
        self.epochs = widgets.BoundedIntText(
            description="epochs", min=1, max=1000, layout=_WIDE, style=_STYLE,
            tooltip="How many times training goes through all the data (it may stop earlier when the "
                    "validation loss stops improving).")
        self.batch_size = widgets.Dropdown(
            description="batch size", options=list(BATCH_SIZES), layout=_WIDE, style=_STYLE,
            tooltip="How many windows the model learns from in one step. Bigger is faster, smaller "
                    "sometimes learns better.")
        self.learning_rate = widgets.FloatLogSlider(
            description="learning rate", base=10, min=-5, max=-1, step=0.25, continuous_update=False,
            readout_format=".1e", layout=_WIDE, style=_STYLE,
            tooltip="How big each learning step is. Too big and training jumps around; too small and "
                    "it crawls.")
        self.seed = widgets.BoundedIntText(
            description="seed", min=0, max=2 ** 31 - 1, layout=_WIDE, style=_STYLE,
            tooltip="A starting number for the random choices in training: the same seed gives the "
                    "same model again.")
        self.validation_split = widgets.FloatSlider(
            description="validation", min=0.0, max=0.5, step=0.05, continuous_update=False,
            readout_format=".2f", layout=_WIDE, style=_STYLE,
            tooltip="Share of the data, at the end of the series, kept aside to check the model on "
                    "readings it has not trained on (0 = none).")
        self.model_box = widgets.VBox([
            self.model, self.lookback, self.kernel_size, self.hidden_sizes, self.dropout, self.epochs,
            self.batch_size, self.learning_rate, self.seed, self.validation_split])

        self.settings_box = widgets.Accordion(children=[self.data_box, self.model_box],
                                              titles=("Data", "Model"), selected_index=None,
                                              layout=widgets.Layout(width="100%"))

        # -- train ----------------------------------------------------------------------------
        self.train_button = widgets.Button(
            description="Train", icon="play", button_style="success", layout=widgets.Layout(width="48%"),
            tooltip="Teach the model what normal looks like on this data, then score every time step.")
        self.stop_button = widgets.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True,
            layout=widgets.Layout(width="48%"),
            tooltip="Stop training now and keep the best model found so far.")
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="98%"),
            tooltip="How far training has got.")
        self.progress_label = widgets.HTML(tooltip="Epoch and batch being trained, time spent and time left.")
        self.train_box = widgets.VBox([widgets.HBox([self.train_button, self.stop_button]),
                                       self.progress, self.progress_label])

        # -- threshold --------------------------------------------------------------------------
        self.threshold_method = widgets.Dropdown(
            description="method", options=[(name, name) for name in THRESHOLDS], layout=_WIDE, style=_STYLE,
            tooltip="How the anomaly threshold is chosen from the training scores. " + " ".join(
                f"{m.name}: {m.description}" for m in THRESHOLDS.values()))
        self.threshold_param = widgets.FloatSlider(
            description="parameter", continuous_update=False, readout_format=".4g", layout=_WIDE,
            style=_STYLE, tooltip="")
        self.threshold_info = widgets.HTML(
            tooltip="The score above which a time step counts as an anomaly, and how many there are.")
        # labels and classroom: precision / recall / F1 live under the threshold, and the answers switch
        self.metrics = MetricsView(state, controller, theme=self.palette)
        self.threshold_box = widgets.VBox([self.threshold_method, self.threshold_param, self.threshold_info,
                                           self.metrics.widget])

        # -- explanation ---------------------------------------------------------------------------
        self.explain_method = widgets.Dropdown(description="explain with", layout=_WIDE, style=_STYLE,
                                               tooltip="")
        self.explain_info = widgets.HTML()
        self.explain_box = widgets.VBox([self.explain_method, self.explain_info])

        def heading(text: str) -> widgets.HTML:
            return widgets.HTML(f"<b style='font-size:14px'>{text}</b>")

        self.widget = widgets.VBox(
            [widgets.HTML("<h3 style='margin:4px 0'>msda widgets</h3>"), self.status, self.train_box,
             self.settings_box, heading("Threshold"), self.threshold_box, heading("Explanation"),
             self.explain_box],
            layout=widgets.Layout(width="320px", min_width="320px", padding="4px"))

        for widget, name in ((self.status, "status"), (self.upload, "upload"), (self.data_info, "data-info"),
                             (self.epochs, "epochs"), (self.train_button, "train"), (self.stop_button, "stop"),
                             (self.progress, "progress"), (self.progress_label, "progress-label"),
                             (self.threshold_method, "threshold-method"),
                             (self.threshold_param, "threshold-slider"), (self.threshold_info, "anomaly-count"),
                             (self.explain_method, "explain-method")):
            widget.add_class(f"msda-{name}")  # stable hooks for the browser tests and for CSS

        self._wire()
        self._sync_all(defaults)

    # -- wiring -----------------------------------------------------------------------------------
    def _wire(self) -> None:
        c = self.controller
        if isinstance(self.upload, widgets.FileUpload):  # the fallback of an unbuilt source checkout
            self.upload.observe(self._on_upload, names="value")
        else:
            self.upload.on_upload(lambda content, name: self._after(c.load_upload, content, name))
            self.upload.on_refused(lambda name, size, reason: self._after(c.upload_refused, name, size, reason))
        self.sensors.observe(self._guard(lambda v: c.set_sensors(tuple(v) if v else None)), names="value")
        self.time_column.observe(self._guard(lambda v: c.set_time_column(None if v == _NONE else v)),
                                 names="value")
        self.label_column.observe(self._guard(lambda v: c.set_label_column(None if v == _NONE else v)),
                                  names="value")
        self.impute.observe(self._setting("impute"), names="value")
        self.missing_values.observe(self._setting("missing_values", lambda t: _parse_numbers(t, float)),
                                    names="value")
        self.model.observe(self._setting("model"), names="value")
        self.lookback.observe(self._setting("lookback", int), names="value")
        self.kernel_size.observe(self._setting("kernel_size", int), names="value")
        self.hidden_sizes.observe(self._setting("hidden_sizes", lambda t: _parse_numbers(t, _int)), names="value")
        self.dropout.observe(self._setting("dropout", float), names="value")
        self.epochs.observe(self._setting("epochs", int), names="value")
        self.batch_size.observe(self._setting("batch_size", int), names="value")
        self.learning_rate.observe(self._setting("learning_rate", float), names="value")
        self.seed.observe(self._setting("seed", int), names="value")
        self.validation_split.observe(self._setting("validation_split", float), names="value")
        self.train_button.on_click(lambda _b: c.train())
        self.stop_button.on_click(lambda _b: c.stop())
        self.threshold_method.observe(self._guard(lambda v: c.set_threshold(v, None)), names="value")
        self.threshold_param.observe(
            self._guard(lambda v: c.set_threshold(self.threshold_method.value, float(v))), names="value")
        self.explain_method.observe(self._guard(self._on_explain_method), names="value")

        s = self.state
        s.observe(lambda ch: self._sync_all(), names=["settings", "columns", "numeric_columns", "time_column",
                                                      "label_column", "series", "data_name", "data_messages"])
        s.observe(lambda ch: self._sync_task(), names=["task", "progress", "history",
                                                       "classroom", "reveal_truth"])  # + the label column lock
        s.observe(lambda ch: self._sync_status(), names=["message", "level"])
        s.observe(lambda ch: self._sync_threshold(), names=["threshold_method", "threshold_param", "threshold",
                                                            "n_anomalies", "results"])
        s.observe(lambda ch: self._sync_explain(), names=["explain_method", "explanation", "explaining"])

    def _guard(self, func: Callable[[Any], Any]) -> Callable[[dict], None]:
        """An observer that calls ``func(new value)`` unless the panel is copying the state in,
        then copies the state back (a refused change returns to the value in force)."""

        def observer(change: dict) -> None:
            if self._syncing:
                return
            func(change["new"])
            self._sync_all()

        return observer

    def _setting(self, key: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[dict], None]:
        return self._guard(lambda v: self.controller.update_settings(**{key: convert(v)}))

    def _after(self, func: Callable[..., Any], *args: Any) -> None:
        """Run a controller action from a widget callback, then re-sync the panel."""
        func(*args)
        self._sync_all()

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if self._syncing or not files:
            return
        f = files[0]
        content = f["content"] if isinstance(f, dict) else f.content
        name = f["name"] if isinstance(f, dict) else f.name
        self.controller.load_upload(bytes(content), name)
        self._syncing = True
        try:
            self.upload.value = ()  # the same file can be opened again; the bytes are not kept
        finally:
            self._syncing = False

    def _on_explain_method(self, method: str) -> None:
        if method and method != self.state.explain_method:
            self.controller.set_explain_method(method)

    # -- state -> widgets ------------------------------------------------------------------------------
    def _sync_all(self, settings: Optional[dict] = None) -> None:
        self._syncing = True
        try:
            self._sync_data()
            self._sync_model(settings or {**DetectorConfig().flat(), **(self.state.settings or {})})
        finally:
            self._syncing = False
        self._sync_task()
        self._sync_status()
        self._sync_threshold()
        self._sync_explain()

    def _sync_data(self) -> None:
        s = self.state
        settings = s.settings or {}
        series = s.series
        n = f"{series.n_rows:,} rows × {len(series.sensors)} sensors" if series is not None else "no data"
        notes = "".join(f"<li>{html.escape(str(m))}</li>" for m in (s.data_messages or ()))
        self.data_info.value = (f"<div style='font-size:12px'><b>{html.escape(s.data_name or 'no data')}</b>"
                                f" · {n}{f'<ul style=margin:2px>{notes}</ul>' if notes else ''}</div>")
        label = s.label_column
        time_col = s.time_column
        candidates = [c for c in s.numeric_columns if c != label and c != time_col]
        chosen = settings.get("sensors") or (list(series.sensors) if series is not None else candidates)
        options = list(dict.fromkeys([*candidates, *[c for c in chosen if c not in candidates]]))
        # options and selection in one message: ipywidgets sends a new `options` before the reset
        # `index`, and the browser's SelectMultiple fails ("Error setting state") when it redraws
        # fewer options with the old, longer index
        with self.sensors.hold_sync():
            self.sensors.options = options
            self.sensors.value = tuple(c for c in chosen if c in options)

        columns = list(s.columns)
        setting = settings.get("time_column", _AUTO)
        found = f" (found: {time_col})" if time_col else " (none found)"
        time_opts = [(f"auto{found}", _AUTO), ("row order (no time)", _NONE)]
        if time_col and time_col not in columns:
            time_opts.append((time_col, time_col))  # e.g. the table's DatetimeIndex
        time_opts += [(c, c) for c in columns]
        values = [v for _, v in time_opts]
        with self.time_column.hold_sync():
            self.time_column.options = time_opts
            self.time_column.value = _NONE if setting is None else (setting if setting in values else _AUTO)

        label_opts = [("(none)", _NONE)] + [(c, c) for c in columns]
        if label and label not in columns:
            label_opts.append((label, label))
        with self.label_column.hold_sync():
            self.label_column.options = label_opts
            self.label_column.value = label or _NONE
        self.impute.value = settings.get("impute", "interpolate")
        self.missing_values.value = _fmt_numbers(settings.get("missing_values"))

    def _sync_model(self, settings: dict) -> None:
        model = settings.get("model", "deepcnn")
        choices = model_choices()
        names = [v for _, v in choices]
        self.model.options = choices + ([(model, model)] if model not in names else [])
        self.model.value = model
        lookback = int(settings.get("lookback", 10))
        self.lookback.min, self.lookback.max = min(4, lookback), max(100, lookback)
        self.lookback.value = lookback
        kernel = int(settings.get("kernel_size", 3))
        self.kernel_size.min, self.kernel_size.max = min(2, kernel), max(9, kernel)
        self.kernel_size.value = kernel
        self.hidden_sizes.value = ",".join(str(int(v)) for v in settings.get("hidden_sizes") or ())
        self.dropout.value = min(float(settings.get("dropout", 0.2)), self.dropout.max)
        self.epochs.value = int(settings.get("epochs", 30))
        batch = int(settings.get("batch_size", 256))
        self.batch_size.options = sorted(set(BATCH_SIZES) | {batch})
        self.batch_size.value = batch
        self.learning_rate.value = float(settings.get("learning_rate", 1e-3))
        seed = settings.get("seed")
        self.seed.value = int(seed) if seed is not None else 0
        self.validation_split.value = min(float(settings.get("validation_split", 0.1)), self.validation_split.max)

    def _sync_task(self) -> None:
        s = self.state
        running = s.task == "running"
        self.train_button.disabled = running
        self.stop_button.disabled = not running
        model = self.model.value
        for box in (self.data_box, self.model_box):
            for child in box.children:
                if hasattr(child, "disabled"):  # settings are fixed while a model trains
                    child.disabled = running or (child is self.kernel_size and model != "deepcnn") \
                        or (child is self.hidden_sizes and model != "lstm_ae") \
                        or (child is self.label_column and s.classroom and not s.reveal_truth)
        p = s.progress or {}
        fraction = p.get("fraction")
        self.progress.value = float(fraction) if fraction is not None and math.isfinite(fraction) else 0.0
        self.progress.bar_style = {"running": "info", "finished": "success", "cancelled": "warning",
                                   "error": "danger"}.get(s.task, "")
        self.progress_label.value = f"<span style='font-size:12px'>{html.escape(self._progress_text(p))}</span>"

    def _progress_text(self, p: dict) -> str:
        """"epoch 3/30 · batch 12/20 · 4.1 s · ETA 8 s · loss 0.012" while training; a summary
        from the history afterwards (the last batches may not have been published)."""
        task = self.state.task
        history = self.state.history or ()
        if task in ("finished", "cancelled", "error") and history:
            head = {"finished": "done", "cancelled": "stopped", "error": "failed"}[task]
            parts = [head, f"{len(history)} epoch{'s' if len(history) != 1 else ''}"]
            if p.get("elapsed") is not None:
                parts.append(f"{p['elapsed']:.1f} s")
            last = history[-1]
            if len(last) > 1 and last[1] is not None and math.isfinite(last[1]):
                parts.append(f"loss {last[1]:.4g}")
            if len(last) > 2 and last[2] is not None and math.isfinite(last[2]):
                parts.append(f"validation {last[2]:.4g}")
            return " · ".join(parts)
        if not p:
            return "not trained yet" if task == "idle" else task
        parts = []
        if p.get("epochs"):
            parts.append(f"epoch {p.get('epoch', 0)}/{p['epochs']}")
        if p.get("batches"):
            parts.append(f"batch {p.get('batch', 0)}/{p['batches']}")
        if p.get("elapsed") is not None:
            parts.append(f"{p['elapsed']:.1f} s")
        if task == "running" and p.get("eta") is not None and math.isfinite(p["eta"]):
            parts.append(f"ETA {p['eta']:.0f} s")
        loss = p.get("train_loss")
        if loss is not None and math.isfinite(loss):
            parts.append(f"loss {loss:.4g}")
        return " · ".join(parts)

    def _sync_status(self) -> None:
        levels = self.palette.levels
        level = self.state.level if self.state.level in levels else "info"
        fg, bg = levels[level]
        self.status.value = (f"<div class='msda-level-{level}' "
                             f"style='color:{fg};background:{bg};border-left:4px solid {fg};"
                             f"padding:4px 6px;font-size:13px;line-height:1.3'>"
                             f"{html.escape(self.state.message)}</div>")

    def _sync_threshold(self) -> None:
        s = self.state
        method = s.threshold_method if s.threshold_method in THRESHOLDS else "quantile"
        m = THRESHOLDS[method]
        param = s.threshold_param
        value = float(param) if param is not None else (
            float(s.threshold) if method == "fixed" and math.isfinite(s.threshold) else float(m.default))
        low, high, step = _slider_range(method, s.results, s.threshold)
        self._syncing = True
        try:
            self.threshold_method.value = method
            _set_slider(self.threshold_param, low, high, step, value)
            self.threshold_param.description = m.param_name
        finally:
            self._syncing = False
        direction = "higher = stricter (fewer anomalies)" if m.increasing else "lower = stricter (fewer anomalies)"
        self.threshold_param.tooltip = f"{m.param_name}: {m.description} ({direction})"
        self.threshold_method.tooltip = (f"How the anomaly threshold is chosen from the training scores. "
                                         f"Now: {m.name} — {m.description}")
        if s.results is not None and math.isfinite(s.threshold):
            scored = int((s.results.scores == s.results.scores).sum())
            share = f" ({100.0 * s.n_anomalies / scored:.2g} % of scored rows)" if scored else ""
            text = f"threshold <b>{s.threshold:.4g}</b> · <b>{s.n_anomalies:,}</b> anomalies{share}"
        else:
            text = "Train a model to see the threshold and the anomalies."
        self.threshold_info.value = f"<span style='font-size:12px'>{text}</span>"

    def _sync_explain(self) -> None:
        s = self.state
        model = (s.settings or {}).get("model", "deepcnn")
        detector = s.detector
        methods = explain_methods(detector.config.model.model if detector is not None else model)
        current = s.explain_method
        if current and current not in methods:
            methods = {**methods, current: explain_methods(None).get(current, current)}
        self._syncing = True
        try:
            self.explain_method.options = list(methods)
            self.explain_method.value = current if current in methods else None
        finally:
            self._syncing = False
        description = methods.get(current, "")
        self.explain_method.tooltip = ("How the dashboard explains a selected anomaly: which sensors and "
                                       f"moments made its score high. Now: {current} — {description}")
        busy = " <i>explaining…</i>" if s.explaining else ""
        self.explain_info.value = f"<span style='font-size:12px'>{html.escape(description)}{busy}</span>"
