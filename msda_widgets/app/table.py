"""The anomaly table: one line per flagged time step; choosing one explains it; CSV export.

The export is either a client-side download (``download_button=True``: a
:class:`~msda_widgets.app.widgets.DownloadButton`; one click saves ``anomalies.csv``, the file is
made only then and is not kept in the page), or, without the anywidget front-end, a button that
makes a ``data:`` link to click.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Optional

import ipywidgets as widgets
import numpy as np
import pandas as pd

__all__ = ["AnomalyTable", "MAX_ROWS", "row_label"]

#: Lines listed at most (the first ones in the chosen order); the export has them all.
MAX_ROWS = 1000


def _when_text(when: Any) -> str:
    if isinstance(when, (pd.Timestamp, np.datetime64)):
        ts = pd.Timestamp(when)
        return ts.strftime("%Y-%m-%d %H:%M:%S" if ts.second or ts.microsecond else "%Y-%m-%d %H:%M")
    return str(when)


def row_label(when: Any, score: float, sensors: Any) -> str:
    """``"2024-03-01 10:00 | score 0.93 | temperature, flow"``."""
    if isinstance(sensors, (list, tuple, np.ndarray)):
        sensors = ", ".join(map(str, sensors))
    return f"{_when_text(when)} | score {float(score):.3g} | {sensors}"


class AnomalyTable:
    """A list of the anomalies (``state.anomalies``); ``.widget`` is the root."""

    def __init__(self, state: Any, controller: Any, *, max_rows: int = MAX_ROWS,
                 download_button: bool = False) -> None:
        self.state = state
        self.controller = controller
        self.max_rows = int(max_rows)
        self._syncing = False
        self.sort = widgets.ToggleButtons(
            options=[("score ↓", "score"), ("time ↑", "time")], value="score",
            tooltips=["Most unusual first.", "In time order."],
            tooltip="Order of the list: most unusual first, or in time order.",
            style={"button_width": "80px"})
        self.rows = widgets.Select(
            # "auto", not "100%": with the widget's 2 px margins 100% overflowed the column
            options=[], rows=12, layout=widgets.Layout(width="auto"),
            tooltip="Every time step above the threshold. Pick one to see why it was flagged.")
        self.count = widgets.HTML()
        self.export_button = widgets.Button(
            description="Export CSV", icon="download", layout=widgets.Layout(width="130px"),
            tooltip="Make a CSV file of the anomalies (time, score, top sensors) and the settings used, "
                    "then click the link to download it.")
        self.download = widgets.HTML()
        #: the client-side download button (``download_button=True``), else None
        self.export: Optional[Any] = None
        if download_button:
            from .widgets import DownloadButton  # anywidget; raises FrontendNotBuiltError if unbuilt
            # no `tooltip`: ipywidgets' DOMWidgetView.updateTooltip reads the `description` an
            # anywidget model lacks, and the view then fails to render
            self.export = DownloadButton(label="⬇ Export CSV", filename="anomalies.csv", mime="text/csv")
            self.export.on_request(self._send_export)
            self.export.add_class("msda-export")
            export_row = [self.export]
        else:
            self.export_button.add_class("msda-export")
            export_row = [self.export_button, self.download]
        self.rows.add_class("msda-anomaly-list")
        self.count.add_class("msda-table-count")
        self.widget = widgets.VBox(
            [widgets.HTML("<b>Anomalies</b>"), self.sort, self.count, self.rows,
             widgets.HBox(export_row, layout=widgets.Layout(align_items="center"))],
            layout=widgets.Layout(width="100%"))

        self.sort.observe(lambda _ch: self._fill(), names="value")
        self.rows.observe(self._on_choose, names="value")
        self.export_button.on_click(self._on_export)
        state.observe(lambda _ch: self._fill(), names="anomalies")
        state.observe(lambda _ch: self._sync_selected(), names="selected")
        self._fill()

    def _ordered(self) -> pd.DataFrame:
        table = self.state.anomalies
        if table is None or len(table) == 0:
            return pd.DataFrame(columns=["position", "when", "score", "top_sensors"])
        if self.sort.value == "time":
            return table.sort_values("position", kind="stable")
        return table.sort_values("score", ascending=False, kind="stable")

    def _fill(self) -> None:
        table = self._ordered()
        total = len(table)
        shown = table.iloc[:self.max_rows]
        options = [(row_label(w, s, t), int(p)) for p, w, s, t in
                   zip(shown["position"], shown["when"], shown["score"], shown["top_sensors"])]
        self._syncing = True
        try:
            self.rows.options = options
            self._select_current()
        finally:
            self._syncing = False
        if self.state.anomalies is None:
            text = "Train a model to list the anomalies."
        elif total == 0:
            text = "No time step is above the threshold."
        elif total > len(options):
            text = f"{total:,} anomalies; the first {len(options):,} are listed (the export has them all)."
        else:
            text = f"{total:,} anomalies."
        self.count.value = f"<span style='font-size:12px'>{text}</span>"
        self.export_button.disabled = self.state.anomalies is None
        if self.export is not None:
            self.export.disabled = self.state.anomalies is None
        self.download.value = ""

    def _select_current(self) -> None:
        values = {v for _, v in self.rows.options}
        pos = self.state.selected
        self.rows.value = pos if pos in values else None

    def _sync_selected(self) -> None:
        self._syncing = True
        try:
            self._select_current()
        finally:
            self._syncing = False

    def _on_choose(self, change: dict) -> None:
        if self._syncing or change["new"] is None or change["new"] == self.state.selected:
            return
        self.controller.select(int(change["new"]))

    def _send_export(self, button: Any) -> None:
        """DownloadButton request: make the CSV now and hand it to the browser."""
        button.send_file(self.controller.export_csv(), "anomalies.csv", mime="text/csv")

    def _on_export(self, _button: Any = None) -> None:
        data = self.controller.export_csv()
        if not data:
            self.download.value = ""
            return
        payload = base64.b64encode(bytes(data)).decode("ascii")
        n = self.state.n_anomalies
        self.download.value = (
            f"<a download=\"anomalies.csv\" href=\"data:text/csv;base64,{payload}\" target=\"_blank\" "
            f"style='font-size:13px'>⬇ anomalies.csv ({n:,} rows, {html.escape(_size(len(data)))})</a>")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"
