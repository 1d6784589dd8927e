"""The dashboard: panel, timeline, loss curve, histogram, explanation and anomaly table, wired to
one :class:`~msda_widgets.app.state.AppState` through one
:class:`~msda_widgets.app.controller.Controller`.

>>> from msda_widgets.app import Dashboard
>>> Dashboard()                      # doctest: +SKIP  (the built-in demo data)
>>> Dashboard(df, lookback=20)       # doctest: +SKIP  (your DataFrame, CSV path or LabelledData)
"""

from __future__ import annotations

from typing import Any, Optional

import ipywidgets as widgets

from .charts import LossCurve, ScoreHistogram, Timeline
from .controller import Controller
from .explain_view import ExplainView
from .panel import ControlPanel
from .state import AppState
from .table import AnomalyTable

__all__ = ["Dashboard", "THEMES", "PANEL_WIDTH"]

THEMES = ("light", "dark")
PANEL_WIDTH = "330px"


class Dashboard:
    """The whole app. ``.widget`` is the root widget; ``.state`` and ``.controller`` are there for
    notebook users and tests (``dash.controller.train()``, ``dash.state.anomalies``...).

    ``data``: a DataFrame, a CSV path or ``datasets.LabelledData``; ``None`` opens the built-in
    demo data. ``settings``: detector settings (see :mod:`msda_widgets.config`), e.g.
    ``lookback=20, epochs=10``. ``theme``: ``"light"`` or ``"dark"`` (a CSS class on the root
    for the page theme). ``warm_up``: import torch in the background now, so the first Train
    click starts quickly. Nothing is trained until Train is pressed.
    """

    def __init__(self, data: Any = None, *, theme: str = "light", warm_up: bool = True,
                 name: Optional[str] = None, **settings: Any) -> None:
        if theme not in THEMES:
            raise ValueError(f"theme must be one of {', '.join(map(repr, THEMES))}; got {theme!r}")
        self.theme = theme
        self.state = AppState()
        self.controller = Controller(self.state, settings=settings or None, warm_up=warm_up)
        if data is None:
            from .. import datasets
            data = datasets.demo()
        self.controller.load(data, name=name)

        self.panel = ControlPanel(self.state, self.controller)
        self.timeline = Timeline(self.state, self.controller)
        self.loss_curve = LossCurve(self.state)
        self.histogram = ScoreHistogram(self.state, self.controller)
        self.explain_view = ExplainView(self.state, self.controller)
        self.table = AnomalyTable(self.state, self.controller)

        half = widgets.Layout(width="50%", min_width="0")
        main = widgets.VBox(
            [self.timeline.widget,
             widgets.HBox([widgets.Box([self.loss_curve.widget], layout=half),
                           widgets.Box([self.histogram.widget], layout=half)]),
             widgets.HBox([widgets.Box([self.explain_view.widget],
                                       layout=widgets.Layout(width="62%", min_width="0")),
                           widgets.Box([self.table.widget],
                                       layout=widgets.Layout(width="38%", min_width="0", padding="0 0 0 8px"))])],
            layout=widgets.Layout(min_width="0", width="100%"))
        self.widget = widgets.GridBox(
            [self.panel.widget, main],
            layout=widgets.Layout(grid_template_columns=f"{PANEL_WIDTH} minmax(0, 1fr)", grid_gap="8px",
                                  width="100%"))
        self.widget.add_class(f"msda-theme-{theme}")

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        s = self.state
        rows = s.series.n_rows if s.series is not None else 0
        return f"Dashboard({s.data_name!r}, {rows:,} rows, task={s.task!r}, {s.n_anomalies} anomalies)"
