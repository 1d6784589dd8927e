"""IPython extension: ``%load_ext msda_widgets`` registers the ``%msda`` line magic.

``%msda`` opens the dashboard on the built-in data; ``%msda df`` on a DataFrame named ``df`` in
the notebook; ``%msda path/to/file.csv`` on a CSV file. Works in JupyterLab 4, Notebook 7 and
Voila (the magic returns the Dashboard, which displays itself).
"""

from __future__ import annotations

import os
import shlex
from typing import Any

__all__ = ["load_ipython_extension", "msda_magic", "resolve_data"]


def resolve_data(arg: str, namespace: dict) -> Any:
    """The data ``%msda ARG`` refers to: None, a variable of the notebook, or a path."""
    arg = arg.strip()
    if not arg:
        return None
    parts = shlex.split(arg)
    if len(parts) != 1:
        raise ValueError("Usage: %msda [DATAFRAME_OR_PATH] — one name or one path (quote paths with spaces).")
    token = parts[0]
    if token in namespace:
        return namespace[token]
    if os.path.exists(os.path.expanduser(token)):
        return os.path.expanduser(token)
    raise ValueError(f"%msda: {token!r} is neither a variable of this notebook nor an existing file.")


def msda_magic(line: str = "", namespace: dict | None = None):
    from .app.dashboard import Dashboard
    return Dashboard(resolve_data(line, namespace or {}))


def load_ipython_extension(ipython: Any) -> None:
    def _msda(line: str = ""):
        try:
            return msda_magic(line, ipython.user_ns)
        except ValueError as exc:  # a usage error: say it plainly, no traceback
            from IPython.display import display, HTML
            import html
            display(HTML(f"<b>%msda</b>: {html.escape(str(exc))}"))
            return None

    _msda.__doc__ = __doc__
    ipython.register_magic_function(_msda, magic_kind="line", magic_name="msda")


def unload_ipython_extension(ipython: Any) -> None:  # pragma: no cover - nothing to undo
    pass
