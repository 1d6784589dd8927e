"""The dashboard (ipywidgets + bqplot). Names are imported on first use, so importing
``msda_widgets.app`` does not load the widget libraries, torch, shap or captum."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Dashboard": "msda_widgets.app.dashboard",
    "Controller": "msda_widgets.app.controller",
    "AppState": "msda_widgets.app.state",
    "ControlPanel": "msda_widgets.app.panel",
    "Timeline": "msda_widgets.app.charts",
    "LossCurve": "msda_widgets.app.charts",
    "ScoreHistogram": "msda_widgets.app.charts",
    "ExplainView": "msda_widgets.app.explain_view",
    "AnomalyTable": "msda_widgets.app.table",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .charts import LossCurve, ScoreHistogram, Timeline
    from .controller import Controller
    from .dashboard import Dashboard
    from .explain_view import ExplainView
    from .panel import ControlPanel
    from .state import AppState
    from .table import AnomalyTable


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'msda_widgets.app' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
