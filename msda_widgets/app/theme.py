"""Light and dark palettes for the dashboard, and the helpers that apply them to the views.

bqplot 0.13 has no dark figure theme (only ``"classic"`` and ``"gg"``, which follow the page's
CSS variables), so the dark palette styles each figure through its own traits: the plot area
(``Figure.background_style``), title, legend, and each axis (``Axis.color`` for the line and
tick labels, ``grid_color``, ``label_color``, ``tick_style``). The ipywidgets controls are
styled by :func:`style_block`: a ``<style>`` element whose rules apply only inside the
dashboard's root (CSS class ``msda-theme-dark``), so a dark dashboard is dark in a light page
too, and nothing else on the page changes.

The light palette holds the colours the views have always used, and :func:`style_figure` leaves
light figures untouched (bqplot's own look, which follows the page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Union

__all__ = ["Palette", "LIGHT", "DARK", "THEMES", "palette", "style_figure", "style_block", "ROOT_CLASS"]


@dataclass(frozen=True)
class Palette:
    """The colours of one theme. ``levels``: status-line (text, background) per message level."""

    name: str
    dark: bool
    background: str         # behind the whole dashboard (dark only; light keeps the page's)
    surface: str            # plot areas
    text: str               # titles, labels, legend text
    muted: str              # captions, hints, secondary text
    axis: str               # axis lines and tick labels
    grid: str               # grid lines
    border: str             # boxes, inputs, legend frame
    control: str            # buttons and input backgrounds
    score: str              # the anomaly-score line on the timeline
    marker_stroke: str      # outline of the flagged points (against the plot area)
    heatmap_stroke: str     # lines between heat-map cells
    heatmap_null: str       # heat-map cells without a value
    diverging: tuple[str, str, str]   # negative, zero, positive
    note: str               # warnings inside the explanation (e.g. Grad-CAM)
    levels: dict[str, tuple[str, str]] = field(default_factory=dict)


LIGHT = Palette(
    name="light", dark=False, background="", surface="", text="", muted="#555555", axis="", grid="",
    border="", control="", score="#222222", marker_stroke="white", heatmap_stroke="white",
    heatmap_null="#dddddd", diverging=("#2166ac", "#f7f7f7", "#b2182b"), note="#7a4b00",
    levels={"info": ("#1f4e79", "#eaf2fb"), "success": ("#1e6b2e", "#e8f5e9"),
            "warning": ("#7a4b00", "#fff4e0"), "error": ("#8b1a1a", "#fdecea")})

DARK = Palette(
    name="dark", dark=True, background="#111111", surface="#1b1b1b", text="#e6e6e6", muted="#a8a8a8",
    axis="#bdbdbd", grid="#3a3a3a", border="#5a5a5a", control="#2b2b2b", score="#e6e6e6",
    marker_stroke="#111111", heatmap_stroke="#111111", heatmap_null="#3a3a3a",
    diverging=("#4393c3", "#2b2b2b", "#d6604d"), note="#ffcc80",
    levels={"info": ("#9ecbff", "#10263d"), "success": ("#8fd19e", "#12301a"),
            "warning": ("#ffd27a", "#3a2a0a"), "error": ("#ff9b9b", "#3d1414")})

THEMES: dict[str, Palette] = {"light": LIGHT, "dark": DARK}
ROOT_CLASS = "msda-theme-{}"


def palette(theme: Union[str, Palette, None] = "light") -> Palette:
    """The palette for ``"light"`` / ``"dark"`` (a :class:`Palette` is returned as is)."""
    if isinstance(theme, Palette):
        return theme
    name = theme or "light"
    if name not in THEMES:
        raise ValueError(f"theme must be one of {', '.join(map(repr, THEMES))}; got {theme!r}")
    return THEMES[name]


def style_figure(figure: Any, theme: Union[str, Palette, None], axes: Iterable[Any] = ()) -> None:
    """Dress a bqplot Figure (and its axes, plus any extra ``axes``) in the palette.

    Light: nothing changes. Dark: plot area, title, legend and every axis get the dark colours.
    """
    p = palette(theme)
    if not p.dark:
        return
    with figure.hold_sync():
        figure.background_style = {"fill": p.surface}
        figure.title_style = {"fill": p.text}
        figure.legend_style = {"fill": p.surface, "stroke": p.border, "fill-opacity": "0.85"}
        figure.legend_text = {"fill": p.text}
    for axis in [*figure.axes, *axes]:
        with axis.hold_sync():
            axis.color = p.axis
            axis.label_color = p.text
            if hasattr(axis, "grid_color"):
                axis.grid_color = p.grid
            axis.tick_style = {**(axis.tick_style or {}), "fill": p.axis}


def style_block(theme: Union[str, Palette, None]) -> str:
    """A ``<style>`` element for the dashboard root of this theme ("" for light).

    It re-defines, inside ``.msda-theme-dark`` only, the JupyterLab / ipywidgets / bqplot CSS
    variables the controls are drawn with. ``--jp-widgets-*`` and ``--bq-*`` are set directly:
    they are defined on ``:root`` from the ``--jp-*`` colours, and a custom property is resolved
    where it is defined, so re-defining ``--jp-*`` alone would not reach them.
    """
    p = palette(theme)
    if not p.dark:
        return ""
    root = "." + ROOT_CLASS.format(p.name)
    variables = {
        "--jp-layout-color0": p.background, "--jp-layout-color1": p.surface, "--jp-layout-color2": p.control,
        "--jp-layout-color3": p.border,
        "--jp-ui-font-color0": "#ffffff", "--jp-ui-font-color1": p.text, "--jp-ui-font-color2": p.muted,
        "--jp-ui-font-color3": p.muted,
        "--jp-content-font-color0": "#ffffff", "--jp-content-font-color1": p.text,
        "--jp-content-font-color2": p.muted, "--jp-content-font-color3": p.muted,
        "--jp-border-color0": p.border, "--jp-border-color1": p.border, "--jp-border-color2": p.grid,
        "--jp-widgets-color": p.text, "--jp-widgets-label-color": p.text, "--jp-widgets-readout-color": p.text,
        "--jp-widgets-input-color": p.text, "--jp-widgets-input-background-color": p.control,
        "--jp-widgets-input-border-color": p.border, "--jp-widgets-slider-handle-background-color": p.control,
        "--jp-widgets-slider-handle-border-color": p.text, "--jp-widgets-slider-active-handle-color": p.text,
        "--bq-background": p.background, "--bq-content-font-color": p.text,
        "--bq-mark-tooltip-background-color": p.control,
    }
    body = "".join(f"{k}:{v};" for k, v in variables.items())
    return (f"<style>{root}{{{body}background-color:{p.background};color:{p.text};"
            f"color-scheme:dark;padding:4px}}"
            f"{root} select,{root} input,{root} textarea{{color-scheme:dark}}</style>")
