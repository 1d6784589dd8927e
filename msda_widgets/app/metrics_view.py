"""How good is the threshold? Precision / recall / F1 against the labels, and the switch that
shows or hides the ground truth (the teacher's switch in classroom mode).

The numbers are ``state.metrics``, which the controller recomputes each time the flags change
(threshold moved, training finished), so they follow the threshold live. They are counted over
the *scored* rows only (see :meth:`Controller._update_metrics`).

Hidden means absent: while the ground truth is hidden the numbers are not written into the page
at all (not merely styled invisible), and the timeline's label band gets no data, so a student
who opens the browser's developer tools finds nothing either.
"""

from __future__ import annotations

import html
import math
from typing import Any

import ipywidgets as widgets

from .theme import Palette, palette

__all__ = ["MetricsView", "metrics_html"]


def _ratio(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(v) else f"{v:.2f}"


def metrics_html(metrics: dict, muted: str = "#666") -> str:
    """``precision 0.83 · recall 0.41 · F1 0.55`` and ``TP 230 · FP 47 · FN 341 of 4,990 scored rows``.

    A ratio whose denominator is 0 (no flags: precision; no true anomalies: recall) shows "—".
    """
    head = (f"precision <b>{_ratio(metrics.get('precision'))}</b> · recall <b>{_ratio(metrics.get('recall'))}"
            f"</b> · F1 <b>{_ratio(metrics.get('f1'))}</b>")
    counts = " · ".join(f"{k.upper()} {int(metrics.get(k, 0)):,}" for k in ("tp", "fp", "fn"))
    scored = metrics.get("scored")
    tail = f" of {int(scored):,} scored rows" if scored is not None else ""
    return (f"<div style='font-size:12px;line-height:1.4'>{head}<br>"
            f"<span style='color:{muted}'>{counts}{tail}</span></div>")


class MetricsView:
    """The grading line under the threshold controls. ``.widget`` is the root.

    Shown when the data has labels or in classroom mode; otherwise it takes no room. The switch
    ("show answers") calls ``controller.set_reveal_truth``; when the teacher's code is required a
    password box appears beside it, and a wrong code leaves the switch off (the controller says
    why in the status line).
    """

    def __init__(self, state: Any, controller: Any, *, theme: "str | Palette" = "light") -> None:
        self.state = state
        self.controller = controller
        self.palette = palette(theme)
        self._syncing = False
        self.reveal = widgets.ToggleButton(
            description="show answers", icon="eye", value=bool(state.reveal_truth),
            layout=widgets.Layout(width="130px"),
            tooltip="Show the true anomalies (grey bands on the timeline) and how well the threshold "
                    "finds them (precision, recall, F1).")
        self.code = widgets.Password(
            placeholder="teacher's code", layout=widgets.Layout(width="150px"),
            tooltip="Classroom mode: the answers are shown only with the teacher's code.")
        self.numbers = widgets.HTML()
        self.reveal.add_class("msda-reveal")
        self.code.add_class("msda-teacher-code")
        self.numbers.add_class("msda-metrics")
        self.widget = widgets.VBox([widgets.HBox([self.reveal, self.code]), self.numbers],
                                   layout=widgets.Layout(width="98%"))
        self.widget.add_class("msda-metrics-box")

        self.reveal.observe(self._on_switch, names="value")
        state.observe(lambda _ch: self.sync(), names=["metrics", "reveal_truth", "classroom",
                                                      "teacher_code_required", "series", "results"])
        self.sync()

    # -- widgets -> controller -----------------------------------------------------------------
    def _on_switch(self, change: dict) -> None:
        if self._syncing:
            return
        code = self.code.value or None
        self.controller.set_reveal_truth(bool(change["new"]), code=code)
        self._syncing = True
        try:
            self.code.value = ""  # never kept in the page
        finally:
            self._syncing = False
        self.sync()  # a refused code turns the switch back off

    # -- state -> widgets ---------------------------------------------------------------------
    def sync(self) -> None:
        s = self.state
        series = s.series
        has_labels = series is not None and getattr(series, "labels", None) is not None
        shown = has_labels or bool(s.classroom)
        self.widget.layout.display = None if shown else "none"
        self._syncing = True
        try:
            self.reveal.value = bool(s.reveal_truth)
        finally:
            self._syncing = False
        self.reveal.description = "hide answers" if s.reveal_truth else "show answers"
        self.reveal.icon = "eye-slash" if s.reveal_truth else "eye"
        self.code.layout.display = None if (s.teacher_code_required and not s.reveal_truth) else "none"
        muted = self.palette.muted
        if not shown:
            text = ""
        elif not s.reveal_truth:
            text = (f"<span style='font-size:12px;color:{muted}'>"
                    + ("Classroom mode: move the threshold and judge by eye; the answers are hidden until "
                       "the teacher shows them." if s.classroom else "The ground truth is hidden.")
                    + "</span>")
        elif not has_labels:
            text = (f"<span style='font-size:12px;color:{muted}'>This data has no label column, so "
                    f"there is nothing to grade against (choose one under Data).</span>")
        elif s.metrics:
            text = metrics_html(s.metrics, muted)
        else:
            column = html.escape(s.label_column or "the labels")
            text = (f"<span style='font-size:12px;color:{muted}'>Train a model to grade the threshold "
                    f"against {column}.</span>")
        self.numbers.value = text
