"""Controller: the only writer of :class:`~msda_widgets.app.state.AppState`.

Views call its methods; it calls the engine and publishes results into the state. Training
runs in a worker thread; its progress reaches the state at most ``publish_interval`` apart
(default 0.1 s, i.e. ≤ 10 updates per second), each batch of changes applied at once with
``hold_trait_notifications``. Every public method turns engine errors into a plain message in
``state.message`` (``level="error"``) and leaves the previous data and results in place: no
traceback reaches the page.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import threading
import time
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from ..config import DataConfig, DetectorConfig
from ..engine.data import DataPipeline, load_csv
from ..errors import MsdaError
from .state import AppState, Results, SeriesView

__all__ = ["Controller", "MAX_UPLOAD_BYTES", "DEFAULT_SETTINGS"]

log = logging.getLogger(__name__)

#: Largest upload, in bytes (10 MB): one visitor's kernel should not hold more. The browser refuses
#: larger files before sending them (widgets.UploadButton); Python checks again before parsing.
MAX_UPLOAD_BYTES = 10_000_000
#: Dashboard defaults: the engine's, with a fixed seed and one torch thread per kernel — a Voila
#: server runs one kernel per visitor, and oversubscribed torch threads slow every fit 5-30x.
DEFAULT_SETTINGS: dict[str, Any] = {**DetectorConfig().flat(), "seed": 0, "num_threads": 1}
_DATA_KEYS = set(DataConfig.field_names())
HIST_BINS = 50
TOP_SENSORS = 3


def _guarded(method: Callable) -> Callable:
    """Report any exception of a controller method in the status line instead of raising."""

    @functools.wraps(method)
    def wrapper(self: "Controller", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MsdaError as exc:
            self._say(str(exc), "error")
        except Exception as exc:  # the page must never show a traceback
            log.exception("msda_widgets dashboard: %s failed", method.__name__)
            self._say(f"Something went wrong ({type(exc).__name__}: {exc}). Your previous results are kept.",
                      "error")
        return False if method.__name__ in _BOOL_METHODS else None

    return wrapper


_BOOL_METHODS = {"load", "load_upload", "update_settings", "set_time_column", "train", "set_reveal_truth",
                 "apply_suggested_sensors", "set_profile_options"}


class Controller:
    MAX_UPLOAD_BYTES = MAX_UPLOAD_BYTES

    def __init__(self, state: Optional[AppState] = None, settings: Optional[dict] = None, *,
                 publish_interval: float = 0.1, warm_up: bool = False) -> None:
        self.state = state if state is not None else AppState()
        self.publish_interval = publish_interval
        self._frame: Optional[pd.DataFrame] = None
        self._lock = threading.RLock()
        self._thread: Optional[threading.Thread] = None
        self._token = None
        self._run_id = 0
        self._last_publish = 0.0
        merged = DetectorConfig.from_flat(**{**DEFAULT_SETTINGS, **(settings or {})}).flat()
        self.state.settings = merged
        self.state.threshold_method = merged["threshold"]
        self.state.threshold_param = merged["threshold_param"]
        if warm_up:
            threading.Thread(target=self._warm_up, name="msda-warm-up", daemon=True).start()

    # -- helpers ------------------------------------------------------------------------------
    def _say(self, message: str, level: str = "info") -> None:
        with self.state.hold_trait_notifications():
            self.state.message = message
            self.state.level = level

    @staticmethod
    def _warm_up() -> None:
        """Import torch in the background so the first Train click streams quickly.

        Building the first optimizer imports torch's compiler stack lazily (~1 s), so one tiny
        optimizer is built here too."""
        try:
            import torch

            import msda_widgets.engine.detector  # noqa: F401
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        except Exception:  # pragma: no cover - reported when training starts
            log.exception("warm-up import failed")

    @property
    def frame(self) -> Optional[pd.DataFrame]:
        """The current table (as loaded; never modified)."""
        return self._frame

    @property
    def is_training(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the training thread ends (for tests and scripts). True if it ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    # -- data -------------------------------------------------------------------------------
    def _to_frame(self, data: Any, name: Optional[str]) -> tuple[pd.DataFrame, str]:
        if data is None:
            from .. import datasets
            data = datasets.demo()
        if hasattr(data, "with_labels") and hasattr(data, "events"):  # datasets.LabelledData
            return data.with_labels(), name or data.name
        if isinstance(data, pd.DataFrame):
            return data, name or "DataFrame"
        if isinstance(data, (str, os.PathLike)):
            frame = load_csv(data, missing_values=self.state.settings.get("missing_values", ()))
            return frame, name or os.path.basename(os.fspath(data))
        raise MsdaError(f"Cannot open a {type(data).__name__}: pass a DataFrame, a CSV path or nothing "
                        f"(the built-in demo data).")

    def _series_view(self, frame: pd.DataFrame, settings: dict) -> tuple[SeriesView, Any, Optional[str]]:
        config = DataConfig.from_dict({k: settings[k] for k in _DATA_KEYS})
        sd = DataPipeline(config).fit_prepare(frame, min_rows=int(settings["lookback"]) + 2)
        label = next((c for c in sd.report.label_columns if c in frame.columns), None)
        labels = None
        if label is not None:
            truth = pd.to_numeric(frame[label], errors="coerce").fillna(0).to_numpy() > 0
            labels = np.bincount(sd.positions, weights=truth, minlength=len(sd.index)) > 0
        view = SeriesView(sd.index, sd.values, sd.sensors, sd.missing, labels)
        return view, sd.report, label

    def _publish_data(self, frame: pd.DataFrame, name: str, view: SeriesView, report: Any,
                      label: Optional[str]) -> None:
        numeric = tuple(c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]))
        with self.state.hold_trait_notifications():
            self.state.data_name = name
            self.state.columns = tuple(map(str, frame.columns))
            self.state.numeric_columns = tuple(map(str, numeric))
            self.state.time_column = report.time_column
            self.state.label_column = label
            self.state.series = view
            self.state.data_messages = tuple(report.messages())
            self._clear_results()
            extra = f" {' '.join(report.messages())}" if report.messages() else ""
            self._say(f"Loaded {name}: {view.n_rows:,} rows × {len(view.sensors)} sensors.{extra} "
                      f"Press Train to fit a detector.", "success")

    def _clear_results(self) -> None:
        s = self.state
        s.detector = None
        s.results = None
        s.flags = None
        s.n_anomalies = 0
        s.anomalies = None
        s.threshold = float("nan")
        s.selected = -1
        s.explanation = None
        s.activations = None
        s.brush = None
        s.view_range = None
        s.history = ()
        s.progress = {}
        s.task = "idle"
        s.metrics = {}  # labels and classroom

    @_guarded
    def load(self, data: Any = None, name: Optional[str] = None) -> bool:
        """Switch to new data: a DataFrame, a CSV path, ``datasets.LabelledData`` or None (demo)."""
        if self.is_training:
            self._say("Stop the training run before loading other data.", "warning")
            return False
        kept = " The current data is kept." if self._frame is not None else ""
        try:
            frame, name = self._to_frame(data, name)
        except MsdaError as exc:
            path = isinstance(data, (str, os.PathLike))
            self._say(self._read_failed(os.path.basename(os.fspath(data)) if path else None, exc) + kept,
                      "error")
            return False
        settings = {**self.state.settings, "sensors": None, "time_column": "auto"}
        try:
            view, report, label = self._series_view(frame, settings)
        except MsdaError as exc:
            self._say(f"Could not use {name}: {exc}{kept}", "error")
            return False
        self._frame = frame
        self.state.settings = settings
        self._publish_data(frame, name, view, report, label)
        return True

    @_guarded
    def load_upload(self, content: bytes, filename: str = "upload.csv") -> bool:
        """Load an uploaded CSV (bytes). Files above MAX_UPLOAD_BYTES are refused before parsing."""
        size = len(content)
        if size > self.MAX_UPLOAD_BYTES:
            self._say(f"{filename} is {size / 1e6:.1f} MB; uploads are limited to "
                      f"{self.MAX_UPLOAD_BYTES / 1e6:.1f} MB. Open larger files from a notebook with "
                      f"Dashboard('path/to/file.csv'). The current data is kept.", "error")
            return False
        kept = " The current data is kept." if self._frame is not None else ""
        if size == 0:
            self._say(f"Could not read {filename}: '{filename}' is empty. Choose a CSV file with a header "
                      f"line and rows of data.{kept}", "error")
            return False
        source = io.BytesIO(bytes(content))
        source.name = filename  # so that load_csv's messages name the uploaded file
        try:
            frame = load_csv(source, missing_values=self.state.settings.get("missing_values", ()))
        except MsdaError as exc:
            self._say(self._read_failed(filename, exc) + kept, "error")
            return False
        return self.load(frame, name=filename)

    @staticmethod
    def _read_failed(filename: Optional[str], exc: Exception) -> str:
        """``Could not read NAME: <load_csv's message>``, without naming the file twice in a row."""
        message = str(exc)
        if filename is None:
            return message
        own = f"'{filename}': "
        return f"Could not read {filename}: {message[len(own):] if message.startswith(own) else message}"

    @_guarded
    def upload_refused(self, filename: str, size: int, reason: str) -> None:
        """Say that an upload was refused before it reached Python (by the browser-side check of
        the upload widget, which only sends the name, size and reason). Nothing changes."""
        self._say(f"Could not open {filename}: {reason}. Open larger files from a notebook with "
                  f"Dashboard('path/to/file.csv'). The current data is kept."
                  if size > self.MAX_UPLOAD_BYTES else
                  f"Could not open {filename}: {reason}. The current data is kept.", "error")

    @_guarded
    def update_settings(self, **settings: Any) -> bool:
        """Change detector settings (validated). Data settings re-prepare the timeline."""
        merged = DetectorConfig.from_flat(**{**self.state.settings, **settings}).flat()
        if _DATA_KEYS & set(settings) and self._frame is not None:
            try:
                view, report, label = self._series_view(self._frame, merged)
            except MsdaError as exc:
                self._say(f"{exc} The previous setting is kept.", "error")
                return False
            hidden = self.state.label_column if self.state.classroom and not self.state.reveal_truth else None
            if hidden and (label != hidden or hidden in view.sensors):
                self._say("In classroom mode the label column stays out of the sensors until the teacher "
                          "shows the answers. The previous setting is kept.", "warning")
                return False
            with self.state.hold_trait_notifications():
                had_results = self.state.results is not None
                self._clear_results()  # a detector fitted on other rows/sensors no longer matches
                self.state.settings = merged
                self.state.series = view
                self.state.time_column = report.time_column
                self.state.label_column = label
                self.state.data_messages = tuple(report.messages())
                self._say("Data settings changed: " + (" ".join(report.messages()) or
                          f"{view.n_rows:,} rows × {len(view.sensors)} sensors.") +
                          (" Train again to update the results." if had_results else ""), "info")
        else:
            self.state.settings = merged
            if self.state.level == "error":
                self._say("Settings updated.", "info")
        if "threshold" in settings or "threshold_param" in settings:
            self.set_threshold(merged["threshold"], merged["threshold_param"])
        return True

    def set_sensors(self, sensors: Optional[Any]) -> None:
        sensors = tuple(sensors) if sensors else None
        self.update_settings(sensors=sensors)

    def set_time_column(self, name: Optional[str]) -> bool:
        return self.update_settings(time_column=name if name is not None else None)

    def set_label_column(self, name: Optional[str]) -> None:
        """Use ``name`` as the ground-truth column; ``None`` = no label column at all.

        Refused in classroom mode while the ground truth is hidden (with no label column the
        labels would become a sensor line anyone could read)."""
        if self.state.classroom and not self.state.reveal_truth:
            self._say("The label column is fixed in classroom mode until the teacher shows the answers.",
                      "warning")
            return
        self.update_settings(label_columns=(name,) if name else ())

    # -- training -------------------------------------------------------------------------------
    @_guarded
    def train(self) -> bool:
        """Fit a new detector in a worker thread. Ignored (False) while a run is in progress."""
        with self._lock:
            if self.is_training:
                self._say("Training is already running; press Stop first.", "warning")
                return False
            if self._frame is None:
                self._say("Load data first.", "warning")
                return False
            from ..engine.training import CancelToken  # imports torch (pre-warmed by the dashboard)
            self._run_id += 1
            self._token = CancelToken()
            frame, settings, token, run_id = self._frame, dict(self.state.settings), self._token, self._run_id
            thread = threading.Thread(target=self._train_worker, args=(run_id, frame, settings, token),
                                      name=f"msda-train-{run_id}", daemon=True)
            try:
                with self.state.hold_trait_notifications():
                    self.state.task = "running"
                    self.state.history = ()
                    self.state.progress = {"epoch": 0, "epochs": settings["epochs"], "fraction": 0.0}
                    self._say(f"Training {settings['model']} (lookback {settings['lookback']}, "
                              f"up to {settings['epochs']} epochs)…", "info")
            except Exception:
                # a view observing the state raised: no run starts; _guarded reports the error
                self._set_quietly("task", "error")
                raise
            self._thread = thread
            thread.start()
            return True

    def stop(self) -> None:
        """Ask the running training to stop; it ends within one batch and keeps the best weights."""
        token = self._token
        if token is not None and self.is_training:
            token.cancel()
            self._say("Stopping…", "info")

    def _progress_dict(self, p: Any) -> dict:
        return {"epoch": p.epoch, "epochs": p.epochs, "batch": p.batch, "batches": p.batches,
                "fraction": p.fraction, "elapsed": p.elapsed, "eta": p.eta,
                "train_loss": p.train_loss, "val_loss": p.val_loss}

    def _train_worker(self, run_id: int, frame: pd.DataFrame, settings: dict, token: Any) -> None:
        history: list[tuple[float, float, float]] = []

        def publish(progress: dict, force: bool = False) -> None:
            now = time.perf_counter()
            if not force and now - self._last_publish < self.publish_interval:
                return
            self._last_publish = now
            with self.state.hold_trait_notifications():
                self.state.progress = progress
                self.state.history = tuple(history)

        def on_batch(p: Any) -> None:
            publish(self._progress_dict(p))

        last: dict = {}

        def on_epoch(p: Any) -> None:
            history.append((p.epoch, p.train_loss, p.val_loss if p.val_loss is not None else float("nan")))
            last.update(self._progress_dict(p))
            publish(dict(last), force=len(history) == 1)

        try:
            from ..engine.detector import Detector
            det = Detector(**settings).fit(frame, on_batch=on_batch, on_epoch=on_epoch, cancel=token)
            if det.history_.stop_reason == "cancelled" and not det.history_.records:
                self._finish_cancelled_early(run_id)  # no epoch finished: the weights are untrained
                return
            detection = det.detect(frame)
            results = self._results(detection)
        except MsdaError as exc:
            self._finish_failed(run_id, str(exc), history)
            return
        except Exception as exc:
            log.exception("training failed")
            self._finish_failed(run_id, f"Training failed ({type(exc).__name__}: {exc}).", history)
            return
        if run_id != self._run_id:  # superseded (data reloaded); drop silently
            return
        try:
            self._publish_trained(det, results, settings, last)
        except Exception as exc:  # a view observing the state raised: report it, never die silently
            log.exception("publishing the training results failed")
            self._finish_failed(run_id, f"Training finished, but a view failed to show its results "
                                        f"({type(exc).__name__}: {exc}).", history, kept_note=False)
            return
        self._warm_explanations(det, results)

    def _publish_trained(self, det: Any, results: Results, settings: dict, last: dict) -> None:
        h = det.history_
        cancelled = h.stop_reason == "cancelled"
        with self.state.hold_trait_notifications():
            self.state.history = tuple((r.epoch, r.train_loss, r.val_loss if r.val_loss is not None else float("nan"))
                                       for r in h.records)
            final = dict(last or self.state.progress)
            if not cancelled:
                final.update(fraction=1.0, eta=0.0)
            self.state.progress = final
            self.state.detector = det
            self.state.results = results
            self.state.threshold_method = settings["threshold"]
            self.state.threshold_param = settings["threshold_param"]
            self.state.selected = -1
            self.state.explanation = None
            self.state.activations = None
            self.state.brush = None
            self._apply_threshold(float(det.threshold_))
            self.state.task = "cancelled" if cancelled else "finished"
            why = {"completed": f"{len(h.records)} epochs",
                   "early_stopping": f"stopped early after {len(h.records)} epochs",
                   "cancelled": f"stopped by you after {len(h.records)} complete epochs; using the best weights so far",
                   "diverged": h.message}[h.stop_reason]
            level = "warning" if h.stop_reason in ("cancelled", "diverged") else "success"
            self._say(f"Trained in {h.seconds:.1f} s ({why}). {self.state.n_anomalies} anomalies above the "
                      f"threshold {self.state.threshold:.4g}. Click a red point to see why.", level)

    def _set_quietly(self, name: str, value: Any) -> None:
        """Set one state trait even if an observer (a view) raises: traitlets stores the value
        before notifying, so the state stays right; the view's error is logged."""
        try:
            setattr(self.state, name, value)
        except Exception:
            log.exception("a view failed to show %s=%r", name, value)

    def _finish_failed(self, run_id: int, message: str, history: list, kept_note: bool = True) -> None:
        """End a run as ``error`` with ``message``. A view that raises while this is shown is
        logged; the message, level and task are set anyway (the worker never dies silently)."""
        if run_id != self._run_id:
            return
        kept = " The previous results are kept." if kept_note and self.state.results is not None else ""
        for name, value in (("message", message + kept), ("level", "error"), ("task", "error"),
                            ("history", tuple(history))):
            self._set_quietly(name, value)

    def _finish_cancelled_early(self, run_id: int) -> None:
        """Stop pressed before the first epoch ended: no trained weights exist, so nothing is
        published and the previous results (if any) stay."""
        if run_id != self._run_id:
            return
        kept = " The previous results are kept." if self.state.results is not None else ""
        for name, value in (("message", "Training stopped by you before the first epoch finished; no model "
                                        "was kept." + kept), ("level", "warning"), ("task", "cancelled")):
            self._set_quietly(name, value)

    def _warm_explanations(self, det: Any, results: Results) -> None:
        """Import shap/captum and build the explainer caches now, so the first click is fast."""
        try:
            flagged = np.flatnonzero(self.state.flags) if self.state.flags is not None else []
            if len(flagged):
                det.explain(results.detection, int(results.caller_rows[flagged[0]]), self.state.explain_method)
        except Exception:  # warming is best effort; a real click reports its own errors
            log.debug("explanation warm-up failed", exc_info=True)

    def _results(self, detection: Any) -> Results:
        sd = detection.data
        n = len(sd.index)
        scores = np.full(n, np.nan)
        scores[sd.positions] = detection.scores.to_numpy()
        contributions = np.full((n, len(sd.sensors)), np.nan)
        contributions[sd.positions] = detection.contributions.to_numpy()
        caller_rows = np.zeros(n, dtype=np.int64)
        caller_rows[sd.positions] = np.arange(len(sd.positions))
        finite = scores[np.isfinite(scores)]
        hist = np.histogram(finite, bins=HIST_BINS) if len(finite) else (np.zeros(0), np.zeros(1))
        return Results(scores, contributions, tuple(sd.sensors), hist, detection, caller_rows)

    # -- threshold --------------------------------------------------------------------------
    def _apply_threshold(self, threshold: float) -> None:
        """Recolour: flags, count and the anomalies table for a threshold (no retraining)."""
        results = self.state.results
        if results is None:
            return
        scores = results.scores
        with np.errstate(invalid="ignore"):
            flags = scores > threshold
        positions = np.flatnonzero(flags)
        contrib = np.nan_to_num(results.contributions[positions])
        k = min(TOP_SENSORS, contrib.shape[1])
        top = np.argsort(-contrib, axis=1)[:, :k]
        names = np.asarray(results.sensors, dtype=object)
        top_names = [", ".join(row) for row in names[top]] if len(positions) else []
        index = self.state.series.index if self.state.series is not None else results.detection.data.index
        table = pd.DataFrame({"position": positions, "when": index[positions], "score": scores[positions],
                              "top_sensors": top_names}).sort_values("score", ascending=False, kind="stable")
        with self.state.hold_trait_notifications():
            self.state.threshold = float(threshold)
            self.state.flags = flags
            self.state.n_anomalies = int(len(positions))
            self.state.anomalies = table.reset_index(drop=True)
            self._update_metrics()  # labels and classroom: P/R/F1 follow the flags

    @_guarded
    def set_threshold(self, method: Optional[str] = None, param: Optional[float] = None) -> None:
        """Set the threshold by method and parameter (None = the method's default)."""
        det = self.state.detector
        method = method or self.state.threshold_method
        if det is None:
            from ..engine.thresholds import compute_threshold
            compute_threshold([0.0, 1.0], method, param)  # validates method and parameter
            with self.state.hold_trait_notifications():
                self.state.threshold_method, self.state.threshold_param = method, param
                self.state.settings = {**self.state.settings, "threshold": method, "threshold_param": param}
            return
        value = det.set_threshold(method, param)
        with self.state.hold_trait_notifications():
            self.state.threshold_method, self.state.threshold_param = method, param
            self.state.settings = {**self.state.settings, "threshold": method, "threshold_param": param}
            self._apply_threshold(value)
            self._say(f"Threshold {value:.4g} ({method}{'' if param is None else f' {param:g}'}): "
                      f"{self.state.n_anomalies} anomalies.", "info")

    # -- labels and classroom ------------------------------------------------------------------
    #: The teacher's code (classroom mode); kept here only, never in the state the views render.
    _teacher_code: Optional[str] = None
    #: Wrong codes allowed before the switch locks, and for how long it locks (seconds). Every
    #: visitor has a kernel (and so a controller) of their own: this limits guessing per page.
    CODE_TRIES = 5
    CODE_LOCK_S = 60.0
    _code_failures: int = 0
    _revealed_label: Optional[str] = None   # the label column when the answers were last shown
    _code_locked_until: float = 0.0
    _clock: Callable[[], float] = staticmethod(time.monotonic)

    def _update_metrics(self) -> None:
        """Grade the current flags against the labels: ``state.metrics`` (replaced, never mutated).

        ``engine.metrics.point_metrics`` (precision, recall, f1, tp, fp, fn, tn, far, mar; NaN for
        0/0) plus ``scored``, the number of rows counted. Only the *scored* rows count (rows with a
        finite score): the first ``lookback`` rows have no score, so no detector could flag them,
        and counting their labels as misses would grade the window length, not the threshold.
        ``{}`` when the data has no labels or there are no results. One vectorised pass (well under
        a millisecond on 30,000 rows), run each time the flags change.
        """
        s = self.state
        results, flags = s.results, s.flags
        labels = s.series.labels if s.series is not None else None
        if results is None or flags is None or labels is None or len(labels) != len(flags):
            s.metrics = {}
            return
        from ..engine.metrics import point_metrics  # numpy only, no torch
        scored = np.isfinite(results.scores)
        s.metrics = {**point_metrics(flags[scored], labels[scored]), "scored": int(np.count_nonzero(scored))}

    def start_classroom(self, teacher_code: Optional[str] = None) -> None:
        """Classroom mode: hide the ground truth (label spans, precision / recall / F1, the label
        column choice) until :meth:`set_reveal_truth` shows it.

        ``teacher_code``: when given, showing the answers asks for it (for a Voila server, where
        every student's page has the same switch); ``None``: the switch is a plain switch (a
        notebook, or a teacher's own projected screen). The code stays in the controller; the
        state only says that one is needed (``teacher_code_required``).
        """
        code = None if teacher_code is None else str(teacher_code)
        if code is not None and not code.strip():
            raise ValueError("teacher_code is empty: give a word students cannot guess, or None for a "
                             "plain switch.")
        self._teacher_code = code
        with self.state.hold_trait_notifications():
            self.state.classroom = True
            self.state.teacher_code_required = code is not None
            self.state.reveal_truth = False

    @_guarded
    def set_reveal_truth(self, reveal: bool, code: Optional[str] = None) -> bool:
        """Show (``True``) or hide the ground truth. Hiding always works; in classroom mode with a
        teacher's code, showing needs ``code`` to match it (else False and a message)."""
        reveal = bool(reveal)
        s = self.state
        if reveal and s.classroom and self._teacher_code is not None:
            import hmac
            wait = self._code_locked_until - self._clock()
            if wait > 0:
                self._say(f"Too many wrong codes: the answers switch is locked for {math.ceil(wait)} s more.",
                          "warning")
                return False
            given = "" if code is None else str(code)
            if not hmac.compare_digest(given.encode("utf-8"), self._teacher_code.encode("utf-8")):
                self._code_failures += 1
                if self._code_failures >= self.CODE_TRIES:
                    self._code_failures = 0
                    self._code_locked_until = self._clock() + self.CODE_LOCK_S
                    self._say(f"That is not the teacher's code, and that was {self.CODE_TRIES} wrong codes in "
                              f"a row: the answers switch is locked for {self.CODE_LOCK_S:.0f} s.", "warning")
                    return False
                self._say("That is not the teacher's code, so the answers stay hidden. Teacher: type the "
                          "code given to msda-widgets --teacher-code, then switch again.", "warning")
                return False
            self._code_failures = 0
        if reveal == s.reveal_truth:
            return True
        if reveal:
            self._revealed_label = s.label_column
        elif s.classroom and self._revealed_label and s.series is not None \
                and (s.label_column != self._revealed_label or self._revealed_label in s.series.sensors):
            # the teacher changed the label column while the answers were shown: put it back, so
            # that hiding the answers also takes the labels off the timeline
            label = self._revealed_label
            chosen = s.settings.get("sensors")
            kept = tuple(c for c in chosen if c != label) if chosen else ()
            self.update_settings(label_columns=(label,), sensors=kept or None)
        s.reveal_truth = reveal
        if reveal:
            if s.series is not None and s.series.labels is not None:
                self._say("Answers shown: the grey bands on the timeline are the true anomalies, and "
                          "precision / recall / F1 grade the threshold.", "info")
            else:
                self._say("Ground truth shown (this data has no label column).", "info")
        else:
            self._say("Answers hidden." if s.classroom else "Ground truth hidden.", "info")
        return True

    # -- selection and explanation ---------------------------------------------------------------
    @_guarded
    def select(self, position: int) -> None:
        """Select a prepared row (an anomaly) and explain it with the current method."""
        results, det = self.state.results, self.state.detector
        if results is None or det is None:
            self._say("Train a detector first; then click a red point to explain it.", "warning")
            return
        position = int(position)
        if not 0 <= position < len(results.scores) or not np.isfinite(results.scores[position]):
            self._say(f"Row {position} has no score (the first {det.lookback} rows have none).", "warning")
            return
        self.state.selected = position
        self._explain()

    def _explain(self) -> None:
        results, det, position = self.state.results, self.state.detector, self.state.selected
        if results is None or det is None or position < 0:
            return
        self.state.explaining = True
        try:
            when = int(results.caller_rows[position])
            explanation = det.explain(results.detection, when, self.state.explain_method)
            activations = det.activations(results.detection, when)
        except MsdaError as exc:
            self._say(f"Could not explain this point: {exc}", "error")
            return
        finally:
            self.state.explaining = False
        with self.state.hold_trait_notifications():
            self.state.explanation = explanation
            self.state.activations = activations
            top = ", ".join(explanation.top_sensors[:3])
            self._say(f"{self.state.series.index[position]}: score {explanation.score:.4g} "
                      f"(threshold {explanation.threshold:.4g}); {explanation.method} points to {top}.", "info")

    def _step(self, direction: int) -> None:
        flags = self.state.flags
        if flags is None or not flags.any():
            self._say("No anomalies to step through.", "warning")
            return
        positions = np.flatnonzero(flags)
        current = self.state.selected
        if direction > 0:
            later = positions[positions > current]
            target = later[0] if len(later) else positions[0]
        else:
            earlier = positions[positions < current] if current >= 0 else positions
            target = earlier[-1] if len(earlier) else positions[-1]
        self.select(int(target))

    @_guarded
    def select_next(self) -> None:
        self._step(+1)

    @_guarded
    def select_previous(self) -> None:
        self._step(-1)

    @_guarded
    def set_explain_method(self, method: str) -> None:
        from ..engine.explain import EXPLAINERS
        if method not in EXPLAINERS:
            self._say(f"Unknown explanation method {method!r}.", "error")
            return
        self.state.explain_method = method
        self._explain()

    # -- linked views -------------------------------------------------------------------------------
    def set_brush(self, low: Optional[float] = None, high: Optional[float] = None) -> None:
        self.state.brush = None if low is None or high is None else (float(min(low, high)), float(max(low, high)))

    def set_view_range(self, start: Any = None, end: Any = None) -> None:
        self.state.view_range = None if start is None or end is None else (start, end)

    # -- export --------------------------------------------------------------------------------
    def export_csv(self) -> bytes:
        """The anomalies table (when, score, top sensors) with the run's settings as # comments."""
        table = self.state.anomalies
        if table is None:
            table = pd.DataFrame(columns=["position", "when", "score", "top_sensors"])
        header = {
            "data": self.state.data_name,
            "threshold": self.state.threshold,
            "threshold_method": self.state.threshold_method,
            "threshold_param": self.state.threshold_param,
            "settings": self.state.settings,
        }
        from .. import __version__
        lines = [f"# msda_widgets {__version__} anomalies export"]
        lines += [f"# {k}: {json.dumps(v, default=str)}" for k, v in header.items()]
        body = table.drop(columns=["position"]).to_csv(index=False)
        return ("\n".join(lines) + "\n" + body).encode("utf-8")

    # -- profiling ----------------------------------------------------------------------------
    # The "Profile sensors" tab (engine.profile). Lazy: nothing is computed until show_profile()
    # (the tab is first shown); from then on the profile follows the data (an observer of
    # state.series, registered by show_profile) and the options. It profiles every candidate
    # sensor of the table, prepared with the current data settings but all sensors, so applying a
    # suggestion (set_sensors) does not hide the sensors it left out.
    def _profile_key(self) -> str:
        """The data settings the profiled table depends on (all but the sensor selection)."""
        data = {k: v for k, v in self.state.settings.items() if k in _DATA_KEYS and k != "sensors"}
        return json.dumps(data, sort_keys=True, default=str)

    def _profile_cached(self) -> bool:
        cached = getattr(self, "_profile_cache", None)
        return cached is not None and cached[0] is self._frame and cached[1] == self._profile_key()

    def _profile_source(self) -> Optional[SeriesView]:
        """The current table with all candidate sensors, imputed as for the detector (cached)."""
        if self._frame is None:
            return None
        if self._profile_cached():
            return self._profile_cache[2]
        if self.state.settings.get("sensors") is None and self.state.series is not None:
            view = self.state.series  # already every sensor
        else:
            view = self._series_view(self._frame, {**self.state.settings, "sensors": None})[0]
        self._profile_cache = (self._frame, self._profile_key(), view)  # the frame itself: ids are reused
        return view

    def _profile_series_changed(self, change: dict) -> None:
        """state.series was replaced: recompute the profile if its data changed (not for a new
        sensor selection alone)."""
        if self._profile_cached():
            return
        if self.state.profile_active:
            self._refresh_profile()
        else:
            self._profile_cache = None
            with self.state.hold_trait_notifications():
                self.state.profile = None
                self.state.profile_suggestion = None
                self.state.profile_pair_correlation = None

    @_guarded
    def show_profile(self) -> None:
        """The profiling tab is shown: compute the profile now if there is none, and keep it up
        to date from now on (new data, data settings)."""
        if not getattr(self, "_profile_observing", False):
            self.state.observe(self._profile_series_changed, names="series")
            self._profile_observing = True
        self.state.profile_active = True
        if self.state.profile is None or not self._profile_cached():
            self._refresh_profile()

    @_guarded
    def _refresh_profile(self, window: Optional[int] = None, threshold: Optional[float] = None) -> bool:
        """Compute the profile of the current data with these options (None: the state's) and
        publish it with its suggestion and rolling correlation. On an error nothing changes."""
        from ..engine.profile import profile_sensors
        t0 = time.perf_counter()
        source = self._profile_source()
        if source is None:
            return False
        note = ""
        if window is None:
            window = self.state.profile_window
            if window > source.n_rows // 2:  # the default is too long for a short table
                window = max(2, source.n_rows // 2)
                note = f" Window shortened to {window} rows (the data has {source.n_rows:,})."
        threshold = self.state.profile_threshold if threshold is None else threshold
        prof = profile_sensors(source, window=window, threshold=threshold)
        suggestion = prof.suggest_sensors(max_correlation=self.state.profile_max_correlation)
        pair = self._profile_pair_for(prof)
        pair_corr = prof.rolling_correlation(*pair) if pair else None
        with self.state.hold_trait_notifications():
            self.state.profile_window = prof.window
            self.state.profile_threshold = prof.threshold
            self.state.profile = prof
            self.state.profile_suggestion = suggestion
            self.state.profile_pair = pair
            self.state.profile_pair_correlation = pair_corr
            self.state.profile_seconds = time.perf_counter() - t0
            if note:
                self._say(note.strip(), "info")
        return True

    def _profile_pair_for(self, prof: Any) -> tuple:
        """The pair to chart: the current one if both sensors remain, else the pair whose
        correlation shifts the most over time."""
        pair = tuple(self.state.profile_pair)
        if len(pair) == 2 and all(p in prof.sensors for p in pair):
            return pair
        if len(prof.sensors) < 2:
            return ()
        drift = prof.correlation_drift.to_numpy(copy=True)
        drift[np.tril_indices_from(drift)] = np.nan
        if not np.isfinite(drift).any():
            return (prof.sensors[0], prof.sensors[1])
        i, j = np.unravel_index(int(np.nanargmax(drift)), drift.shape)
        return (prof.sensors[i], prof.sensors[j])

    @_guarded
    def set_profile_options(self, window: Optional[int] = None, threshold: Optional[float] = None,
                            max_correlation: Optional[float] = None) -> bool:
        """Change the profile's window length (rows), growth / decay threshold (standard deviations
        of each sensor's steps) and the suggestion's maximum correlation; recomputes what they
        change. A refused value is reported in the status line and the previous one is kept."""
        from ..engine.profile import check_fraction
        if max_correlation is not None:
            max_correlation = check_fraction(max_correlation, "max_correlation", low_open=True)
        if (window is not None or threshold is not None) and self._frame is not None:
            w = self.state.profile_window if window is None else window
            ok = self._refresh_profile(window=w, threshold=threshold)
            if not ok:
                return False
        elif window is not None or threshold is not None:  # no data yet: just validate and keep
            from ..engine.profile import check_window
            from ..errors import ConfigError
            with self.state.hold_trait_notifications():
                if window is not None:
                    self.state.profile_window = check_window(window, 10 ** 12)
                if threshold is not None:
                    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                            or not np.isfinite(threshold) or threshold < 0:
                        raise ConfigError(f"threshold must be a number >= 0; got {threshold!r}.")
                    self.state.profile_threshold = float(threshold)
        if max_correlation is not None:
            self.state.profile_max_correlation = max_correlation
            prof = self.state.profile
            if prof is not None:
                self.state.profile_suggestion = prof.suggest_sensors(max_correlation=max_correlation)
        if self.state.level == "error":
            self._say("Profile options updated.", "info")
        return True

    @_guarded
    def set_profile_pair(self, a: str, b: str) -> None:
        """Chart the rolling correlation of sensors ``a`` and ``b`` (over the profile's window)."""
        prof = self.state.profile
        if prof is None:
            self._say("Open the sensor profile first.", "warning")
            return
        series = prof.rolling_correlation(a, b)
        with self.state.hold_trait_notifications():
            self.state.profile_pair = (a, b)
            self.state.profile_pair_correlation = series

    @_guarded
    def apply_suggested_sensors(self) -> bool:
        """Use the profile's suggested sensors as the detector's sensor selection (Train again to
        fit on them)."""
        if self.is_training:
            self._say("Stop the training run before changing the sensors.", "warning")
            return False
        if self.state.profile_suggestion is None:
            self.show_profile()
        suggestion = self.state.profile_suggestion
        if suggestion is None:
            self._say("Load data first: there is no sensor profile to take a suggestion from.", "warning")
            return False
        if not suggestion.sensors:
            self._say("The profile suggests no sensor (they are all flat or rarely change); the selection "
                      "is unchanged.", "warning")
            return False
        if not self.update_settings(sensors=tuple(suggestion.sensors)):
            return False
        left = suggestion.left_out
        self._say(f"Using the {len(suggestion.sensors)} suggested sensors"
                  + (f" (left out: {', '.join(left[:6])}{' ...' if len(left) > 6 else ''})" if left else "")
                  + ". Press Train to fit a detector on them.", "success")
        return True
    # -- end profiling --
