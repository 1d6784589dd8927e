"""AppState: the single source of truth the dashboard renders.

A plain ``traitlets.HasTraits`` object (not a widget). Only the :class:`Controller` writes it;
views observe it. Values are *replaced*, never mutated in place (an appended list or an edited
array is not observed), following solara's state discipline. Updates that belong together are
made inside ``state.hold_trait_notifications()`` by the controller.

Coordinates: every per-row array here is in *prepared row* order — the sorted, de-duplicated
time axis of ``series.index`` — not in the order of the caller's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd
from traitlets import Any as AnyTrait
from traitlets import Bool, Dict, Enum, Float, HasTraits, Int, Tuple, Unicode

__all__ = ["AppState", "SeriesView", "Results", "TASK_STATES", "LEVELS"]

TASK_STATES = ("idle", "running", "cancelled", "finished", "error")
LEVELS = ("info", "success", "warning", "error")


@dataclass(frozen=True, eq=False)
class SeriesView:
    """The data as the timeline draws it (after imputation, before scaling)."""

    index: pd.Index            # (T,) sorted unique timestamps (DatetimeIndex) or row numbers
    values: np.ndarray         # (T, S) float64
    sensors: tuple[str, ...]
    missing: np.ndarray        # (T, S) bool: imputed cells
    labels: Optional[np.ndarray] = None   # (T,) bool ground truth, when the data has labels

    @property
    def n_rows(self) -> int:
        return len(self.index)


@dataclass(frozen=True, eq=False)
class Results:
    """A fitted detector's output on the current data, in prepared row order."""

    scores: np.ndarray         # (T,) float64, NaN where no window judges the row
    contributions: np.ndarray  # (T, S) per-sensor squared error, NaN where unscored
    sensors: tuple[str, ...]
    histogram: tuple[np.ndarray, np.ndarray]  # (counts, bin edges) of the finite scores
    detection: Any             # the engine's Detection (passed back to explain calls)
    caller_rows: np.ndarray    # (T,) int: one caller row (iloc) per prepared row, for explain(when=int)


class AppState(HasTraits):
    # -- data ---------------------------------------------------------------------------------
    data_name = Unicode("", help="Name of the current data (file name or 'built-in demo').")
    columns = Tuple(help="All columns of the current table.")
    numeric_columns = Tuple(help="Columns that can be sensors.")
    time_column = Unicode(None, allow_none=True, help="Timestamp column found (None: row order).")
    label_column = Unicode(None, allow_none=True, help="Ground-truth label column, if any.")
    series = AnyTrait(None, allow_none=True, help="SeriesView of the current data.")
    data_messages = Tuple(help="What loading did (dropped columns, imputation...).")

    # -- settings ------------------------------------------------------------------------------
    settings = Dict(help="Flat Detector settings (see msda_widgets.config); replaced, never mutated.")

    # -- task (training) ---------------------------------------------------------------------
    task = Enum(TASK_STATES, default_value="idle")
    message = Unicode("Ready: press Train to fit a detector.")
    level = Enum(LEVELS, default_value="info")
    progress = Dict(help="epoch, epochs, batch, batches, fraction, elapsed, eta, train_loss, val_loss")
    history = Tuple(help="((epoch, train_loss, val_loss or nan), ...) — grows live while training.")

    # -- results ----------------------------------------------------------------------------
    detector = AnyTrait(None, allow_none=True, help="The fitted Detector (engine object).")
    results = AnyTrait(None, allow_none=True, help="Results of the detector on the current data.")
    threshold_method = Unicode("quantile")
    threshold_param = AnyTrait(None, allow_none=True)
    threshold = Float(float("nan"))
    flags = AnyTrait(None, allow_none=True, help="(T,) bool: score > threshold.")
    n_anomalies = Int(0)
    anomalies = AnyTrait(None, allow_none=True,
                         help="DataFrame of flagged rows: position, when, score, top_sensors (by score desc).")
    metrics = Dict(help="precision / recall / f1 against labels, when labels are known.")

    # -- labels and classroom -------------------------------------------------------------------
    # ``metrics``: engine.metrics.point_metrics of the flags against ``series.labels`` over the
    # scored rows, plus ``scored`` (rows counted); {} without labels or results (Controller).
    classroom = Bool(False, help="Classroom mode: the ground truth is hidden until the teacher shows it.")
    reveal_truth = Bool(True, help="Show the ground truth (label spans, precision / recall / F1).")
    teacher_code_required = Bool(False, help="Showing the ground truth asks for the teacher's code.")
    # -- end labels and classroom --

    # -- selection and explanation -------------------------------------------------------------
    selected = Int(-1, help="Prepared row position of the selected anomaly (-1: none).")
    explain_method = Unicode("shap")
    explanation = AnyTrait(None, allow_none=True, help="Explanation of the selected row.")
    activations = AnyTrait(None, allow_none=True, help="dict layer -> DataFrame for the selected row.")
    explaining = Bool(False)

    # -- linked views --------------------------------------------------------------------------
    brush = AnyTrait(None, allow_none=True, help="(low, high) score range brushed on the histogram.")
    view_range = AnyTrait(None, allow_none=True, help="(start, end) visible x range of the timeline.")

    # -- profiling ----------------------------------------------------------------------------
    # The "Profile sensors" tab: an engine.profile.SensorProfile of every candidate sensor (the
    # data as prepared for the detector, whatever the sensor selection), computed by the
    # Controller only once the tab has been shown, and again when the data or the options change.
    profile_active = Bool(False, help="The profiling tab has been shown: keep the profile up to date.")
    profile_window = Int(30, help="Rows per window of the profile's window statistics.")
    profile_threshold = Float(1.0, help="Growth / decay threshold, in standard deviations of each sensor's steps.")
    profile_max_correlation = Float(0.95, help="Suggestion: leave out a sensor this correlated with a chosen one.")
    profile = AnyTrait(None, allow_none=True, help="engine.profile.SensorProfile of the current data (or None).")
    profile_suggestion = AnyTrait(None, allow_none=True, help="engine.profile.SensorSuggestion of the profile.")
    profile_pair = Tuple(help="(sensor a, sensor b) shown in the rolling-correlation chart; () for none.")
    profile_pair_correlation = AnyTrait(None, allow_none=True,
                                        help="pd.Series: rolling correlation of profile_pair (or None).")
    profile_seconds = Float(0.0, help="Kernel time of the last profile computation.")
    # -- end profiling --
