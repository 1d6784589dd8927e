"""The dashboard: panel, timeline, loss curve, histogram, explanation and anomaly table, wired to
one :class:`~msda_widgets.app.state.AppState` through one
:class:`~msda_widgets.app.controller.Controller`.

>>> from msda_widgets.app import Dashboard
>>> Dashboard()                      # doctest: +SKIP  (the built-in demo data)
>>> Dashboard(df, lookback=20)       # doctest: +SKIP  (your DataFrame, CSV path or LabelledData)
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import ipywidgets as widgets
import numpy as np

from .charts import LossCurve, ScoreHistogram, Timeline
from .controller import Controller
from .explain_view import ExplainView
from .panel import ControlPanel
from .profile_view import ProfileView
from .state import AppState
from .table import AnomalyTable
from .theme import ROOT_CLASS, palette, style_block
from .widgets import FrontendNotBuiltError, KeyboardNav

__all__ = ["Dashboard", "THEMES", "PANEL_WIDTH", "CLASSROOM_SETTINGS"]

log = logging.getLogger(__name__)

THEMES = ("light", "dark")
PANEL_WIDTH = "330px"
#: ``Dashboard(classroom=True)``'s detector settings: a small DeepCNN that trains on the built-in
#: data (5,000 rows x 8 sensors) in about half a second on one thread, the same every time (seed 0).
#: Settings passed to the Dashboard override them.
CLASSROOM_SETTINGS: dict[str, Any] = {
    "model": "deepcnn", "lookback": 10, "kernel_size": 3, "conv_channels": (16, 16), "dense_units": 32,
    "epochs": 10, "batch_size": 128, "seed": 0, "num_threads": 1, "threshold": "quantile",
    "threshold_param": None,
}


class Dashboard:
    """The whole app. ``.widget`` is the root widget; ``.state`` and ``.controller`` are there for
    notebook users and tests (``dash.controller.train()``, ``dash.state.anomalies``...).

    ``data``: a DataFrame, a CSV path or ``datasets.LabelledData``; ``None`` opens the built-in
    demo data. ``settings``: detector settings (see :mod:`msda_widgets.config`), e.g.
    ``lookback=20, epochs=10``. ``theme``: ``"light"`` or ``"dark"`` (the charts, the status line
    and the controls are drawn in it, whatever the page's theme; see :mod:`.theme`).
    ``warm_up``: import torch in the background now, so the first Train click starts quickly.
    Nothing is trained until Train is pressed.

    Keyboard: click the box beside Prev/Next, then ← → step through the anomalies, Enter explains
    the current one again, Home/End jump to the first/last. The export button downloads the
    anomalies as a CSV file in the browser. Both are anywidget front-ends (``js/``); in a source
    checkout whose front-end was never built the keyboard box is left out and the export falls
    back to a link.

    Labels: when the data has a label column (found by name, or chosen under Data), the timeline
    shades the true anomalies and precision / recall / F1 under the threshold follow it live.

    ``classroom=True``: the "find the threshold" exercise. The built-in labelled data (unless
    ``data`` is given), :data:`CLASSROOM_SETTINGS` (small, fast, seeded), and the ground truth —
    the grey label bands, precision / recall / F1 and the label column choice — hidden until the
    "show answers" switch is on. ``teacher_code``: with it the switch asks for the code, so that
    students on a shared Voila server (each visitor has a kernel of their own, all see the same
    page) cannot reveal the answers; the teacher reveals them on their own (projected) page.
    Without it the switch is a plain switch, for a notebook or the teacher's own screen. The code
    keeps honest students from peeking (five wrong codes lock a page's switch for a minute); it is
    not a password system.
    """

    def __init__(self, data: Any = None, *, theme: str = "light", warm_up: bool = True,
                 name: Optional[str] = None, classroom: bool = False, teacher_code: Optional[str] = None,
                 **settings: Any) -> None:
        if theme not in THEMES:
            raise ValueError(f"theme must be one of {', '.join(map(repr, THEMES))}; got {theme!r}")
        if teacher_code is not None and not classroom:
            raise ValueError("teacher_code is used only in classroom mode: pass classroom=True as well.")
        self.theme = theme
        p = palette(theme)
        self.state = AppState()
        if classroom:
            settings = {**CLASSROOM_SETTINGS, **settings}
        self.controller = Controller(self.state, settings=settings or None, warm_up=warm_up)
        if classroom:
            self.controller.start_classroom(teacher_code)
        if data is None:
            from .. import datasets
            data = datasets.demo()
        self.controller.load(data, name=name)

        try:
            self.keyboard: Optional[KeyboardNav] = KeyboardNav()
        except FrontendNotBuiltError as exc:
            log.warning("msda_widgets: no keyboard navigation and a link for the export: %s", exc)
            self.keyboard = None
        if self.keyboard is not None:
            self.keyboard.on_action(self._on_key)
            self.keyboard.add_class("msda-keyboard")
            self.keyboard.layout = widgets.Layout(margin="0 6px", flex="1 1 auto")

        self.panel = ControlPanel(self.state, self.controller, theme=p)
        self.timeline = Timeline(self.state, self.controller, theme=p)
        self.loss_curve = LossCurve(self.state, theme=p)
        self.histogram = ScoreHistogram(self.state, self.controller, theme=p)
        self.explain_view = ExplainView(self.state, self.controller, theme=p, keyboard=self.keyboard)
        self.table = AnomalyTable(self.state, self.controller, download_button=self.keyboard is not None)

        half = widgets.Layout(width="50%", min_width="0")
        main = widgets.VBox(
            [self.timeline.widget,
             widgets.HBox([widgets.Box([self.loss_curve.widget], layout=half),
                           widgets.Box([self.histogram.widget], layout=half)]),
             widgets.HBox([widgets.Box([self.explain_view.widget],
                                       layout=widgets.Layout(width="62%", min_width="0")),
                           # the rest of the row (a width of 38% plus the padding overflowed it)
                           widgets.Box([self.table.widget],
                                       layout=widgets.Layout(flex="1 1 0", min_width="0", padding="0 0 0 8px"))])],
            layout=widgets.Layout(min_width="0", width="100%"))
        # -- profiling: main area in tabs; the profile is computed when first shown
        self.profile_view = ProfileView(self.state, self.controller, theme=p)
        self.tabs = widgets.Tab([main, self.profile_view.widget], titles=("Detect", "Profile sensors"),
                                layout=widgets.Layout(min_width="0", width="100%"))
        self.tabs.add_class("msda-main-tabs")
        self.tabs.observe(self._on_tab, names="selected_index")
        children = [self.panel.widget, self.tabs]
        css = style_block(p)
        if css:  # scoped to this dashboard's root class; an empty grid item, hidden
            children.append(widgets.HTML(css, layout=widgets.Layout(display="none")))
        self.widget = widgets.GridBox(
            children,
            layout=widgets.Layout(grid_template_columns=f"{PANEL_WIDTH} minmax(0, 1fr)", grid_gap="8px",
                                  width="100%"))
        self.widget.add_class("msda-dashboard")
        self.widget.add_class(ROOT_CLASS.format(theme))

    def show_profile(self) -> None:
        """Switch to the "Profile sensors" tab (computing the profile if it is not yet)."""
        self.tabs.selected_index = 1

    def show_detection(self) -> None:
        """Switch back to the "Detect" tab."""
        self.tabs.selected_index = 0

    def _on_tab(self, change: dict) -> None:
        """Profiling tab shown: compute the sensor profile (only then: start-up stays fast)."""
        if change["new"] == 1:
            self.profile_view.activate()

    def _on_key(self, action: str) -> None:
        """KeyboardNav action -> controller (next / previous / explain / first / last)."""
        c, s = self.controller, self.state
        if action == "next":
            c.select_next()
        elif action == "previous":
            c.select_previous()
        elif action == "explain":
            if s.selected >= 0:
                c.select(s.selected)
            else:
                c.select_next()
        elif action in ("first", "last"):
            flags = s.flags
            if flags is None or not np.any(flags):
                c.select_next()  # says there is nothing to step through
                return
            positions = np.flatnonzero(flags)
            c.select(int(positions[0] if action == "first" else positions[-1]))

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        s = self.state
        rows = s.series.n_rows if s.series is not None else 0
        return f"Dashboard({s.data_name!r}, {rows:,} rows, task={s.task!r}, {s.n_anomalies} anomalies)"
