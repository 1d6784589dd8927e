"""The package's own small widgets, where ipywidgets and bqplot fall short (anywidget).

* :class:`KeyboardNav` — a focusable box: ← → (n/p, j/k) step through anomalies, Enter (e)
  explains the current one, Home/End jump to the first/last. Python receives the actions.
* :class:`DownloadButton` — a client-side download that works in Voila: Python hands the bytes
  to the browser, which saves them as a file; nothing is written on the server.
* :class:`UploadButton` — a file picker that refuses files above a size limit in the browser,
  before reading them, and sends accepted files to Python in acknowledged chunks (ipywidgets'
  ``FileUpload`` sends a file in one websocket message, which Voila drops above ~10 MB).

Their front-ends are ESM modules in ``js/src/`` bundled by esbuild into ``msda_widgets/static/``
(git-ignored, built by the package build: ``pip install -e .`` / ``make install`` run
``hatch_build.py``, which runs npm). In a source checkout that was never built, the classes
still import but refuse to instantiate with :class:`FrontendNotBuiltError`, which says how to
build; nothing is built on demand from inside a running kernel (npm may be absent there, and
a silent network install at widget creation would surprise).

``key_to_action``, ``sanitize_filename``, ``plan_upload`` and ``format_mb`` are the Python twins
of ``keyToAction``, ``sanitizeFilename``, ``planUpload`` and ``formatMB`` in ``js/src/logic.js``; ``tests/app/test_js.py`` runs both on the same
cases and asserts they agree. Change both sides together.
"""

from __future__ import annotations

import base64
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any, Callable, Optional, Union

import anywidget
from ipywidgets import CallbackDispatcher
from traitlets import Bool, Int, Unicode

from ..errors import MsdaError

__all__ = [
    "KeyboardNav",
    "DownloadButton",
    "UploadButton",
    "UPLOAD_CHUNK_BYTES",
    "plan_upload",
    "format_mb",
    "FrontendNotBuiltError",
    "KEY_ACTIONS",
    "ACTIONS",
    "DEFAULT_FILENAME",
    "DEFAULT_STEM",
    "MAX_FILENAME_LENGTH",
    "STATIC_DIR",
    "key_to_action",
    "sanitize_filename",
]

log = logging.getLogger(__name__)

#: Where ``npm --prefix js run build`` writes the bundled front-ends.
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# -- pure logic: twins of js/src/logic.js -------------------------------------------------------

#: Keyboard key (``KeyboardEvent.key``) -> action. Case-sensitive, like the JS table.
KEY_ACTIONS: dict[str, str] = {
    "ArrowRight": "next",
    "n": "next",
    "j": "next",
    "ArrowLeft": "previous",
    "p": "previous",
    "k": "previous",
    "Enter": "explain",
    "e": "explain",
    "Home": "first",
    "End": "last",
}
#: The actions :meth:`KeyboardNav.on_action` callbacks can receive.
ACTIONS: tuple[str, ...] = ("next", "previous", "explain", "first", "last")
DEFAULT_FILENAME = "download.csv"
DEFAULT_STEM = "download"
MAX_FILENAME_LENGTH = 100
MAX_EXTENSION_LENGTH = 16

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def key_to_action(key: object) -> Optional[str]:
    """The action for a ``KeyboardEvent.key`` value, or ``None`` for any other key."""
    if not isinstance(key, str):
        return None
    return KEY_ACTIONS.get(key)


def sanitize_filename(name: object) -> str:
    """A safe download file name; same rules, step by step, as ``sanitizeFilename`` in JS.

    1. Unicode NFKD ("ü" -> "u" + combining mark, full-width letters -> ASCII);
    2. keep the last path component (after the last ``/`` or ``\\``);
    3. spaces -> ``_``;
    4. drop everything but ASCII letters, digits, ``.``, ``_``, ``-`` (control characters,
       quotes, colons, combining marks, emoji...);
    5. strip trailing dots; empty -> ``"download.csv"``;
    6. leading dots (an empty stem: ``"日本語.csv"`` is ``".csv"`` by now) become
       ``"download."``, so no hidden files and no ``..``;
    7. longer than 100 characters -> shorten the stem and keep the extension (the last
       ``.suffix``, if at most 16 characters and not the whole name), dropping dots left at
       the end of the shortened stem.

    Non-strings count as empty. After step 4 the name is ASCII, so lengths agree with JS.
    """
    s = unicodedata.normalize("NFKD", name) if isinstance(name, str) else ""
    cut = max(s.rfind("/"), s.rfind("\\"))
    s = s[cut + 1:]
    s = s.replace(" ", "_")
    s = _UNSAFE.sub("", s)
    s = s.rstrip(".")
    if not s:
        return DEFAULT_FILENAME
    if s.startswith("."):
        s = f"{DEFAULT_STEM}.{s.lstrip('.')}"
    if len(s) <= MAX_FILENAME_LENGTH:
        return s
    dot = s.rfind(".")
    ext = s[dot:] if dot > 0 and len(s) - dot <= MAX_EXTENSION_LENGTH else ""
    return s[: MAX_FILENAME_LENGTH - len(ext)].rstrip(".") + ext


#: Bytes per message when the browser sends a file (twin of UPLOAD_CHUNK_BYTES in logic.js).
UPLOAD_CHUNK_BYTES = 1024 * 1024


def format_mb(n_bytes: int) -> str:
    """``"12.3 MB"`` (decimal megabytes, one decimal), like ``formatMB`` in JS."""
    return f"{n_bytes / 1e6:.1f} MB"


def plan_upload(size: object, max_bytes: int, chunk_bytes: int = UPLOAD_CHUNK_BYTES) -> dict:
    """May a file of ``size`` bytes be sent, and in which ``[start, end)`` chunks?

    ``{"ok": True, "chunks": [[0, 1048576], ...]}`` or ``{"ok": False, "reason": "..."}``: the
    same answer, case by case, as ``planUpload`` in ``js/src/logic.js``.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size > 2 ** 53 - 1:
        return {"ok": False, "reason": "the file's size could not be read"}
    if size == 0:
        return {"ok": False, "reason": "the file is empty"}
    if size > max_bytes:
        return {"ok": False,
                "reason": f"the file is {format_mb(size)} and uploads are limited to {format_mb(max_bytes)}"}
    step = max(1, int(chunk_bytes))
    return {"ok": True, "chunks": [[start, min(size, start + step)] for start in range(0, size, step)]}


# -- widgets ------------------------------------------------------------------------------------


class FrontendNotBuiltError(MsdaError, RuntimeError):
    """The bundled JavaScript of a widget is missing (a source checkout that was never built)."""


def _static_esm(filename: str) -> Union[Path, str]:
    """``_esm`` for a class body: the built file, or a placeholder if it is not built yet.

    anywidget reads a ``Path`` ``_esm`` when the class is defined and raises a bare
    FileNotFoundError if it is missing; the placeholder keeps ``import`` working so that the
    clear :class:`FrontendNotBuiltError` comes when a widget is created instead.
    """
    path = STATIC_DIR / filename
    if path.is_file():
        return path
    return f"// msda_widgets: {filename} is not built\nexport default {{}};\n"


class _StaticWidget(anywidget.AnyWidget):
    """An anywidget whose ``_esm`` is a bundled file in ``msda_widgets/static/``."""

    _static_name: str = ""

    def __init__(self, **kwargs: Any) -> None:
        cls = type(self)
        path = STATIC_DIR / cls._static_name
        if not path.is_file():
            raise FrontendNotBuiltError(
                f"{cls.__name__} needs its bundled front-end {path}, which does not exist: this "
                "looks like a source checkout that was never built. Build it with "
                "`npm --prefix js ci && npm --prefix js run build` (node >= 18), or reinstall "
                "the package (`pip install -e .` / `make install` run that build)."
            )
        if isinstance(cls.__dict__.get("_esm"), str):
            # Built after this module was imported: use the file from now on.
            cls._esm = path.read_text(encoding="utf-8")
        super().__init__(**kwargs)

    @classmethod
    def esm_path(cls) -> Path:
        """The bundled ESM file this widget's front-end is loaded from."""
        return STATIC_DIR / cls._static_name


class KeyboardNav(_StaticWidget):
    """Keyboard navigation between anomalies.

    Click the box, then ← → (or n/p, j/k) send ``"next"`` / ``"previous"``, Enter (or e)
    ``"explain"``, Home/End ``"first"`` / ``"last"``. The browser sends at most one action per
    80 ms while a key is held. Register handlers with :meth:`on_action`::

        nav = KeyboardNav()
        nav.on_action(lambda action: controller.step(action))
    """

    _static_name = "keyboard.js"
    _esm = _static_esm("keyboard.js")

    presses = Int(0, help="Actions sent by the browser so far (set by the front-end).").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._action_handlers = CallbackDispatcher()
        self.on_msg(self._handle_frontend_msg)

    def on_action(self, callback: Callable[[str], Any], remove: bool = False) -> None:
        """Call ``callback(action)`` for every action from the keyboard (``remove=True`` to stop)."""
        self._action_handlers.register_callback(callback, remove=remove)

    def _handle_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action not in ACTIONS:
            log.debug("KeyboardNav ignored an unknown front-end message: %r", content)
            return
        self._action_handlers(action)


class DownloadButton(_StaticWidget):
    """A button that downloads a file in the browser (works in Voila and Jupyter).

    Two ways to use it:

    * push: ``button.send_file(csv_bytes, "anomalies.csv")`` downloads at once;
    * on click: ``button.on_request(lambda b: b.send_file(make_csv(), "anomalies.csv"))``
      computes the export only when the user clicks the button.

    ``payload`` holds the file as base64 until the browser confirms the download, then is
    cleared so the widget state does not keep the file.
    """

    _static_name = "download.js"
    _esm = _static_esm("download.js")

    payload = Unicode("", help="The file, base64-encoded (set by send_file).").tag(sync=True)
    filename = Unicode(DEFAULT_FILENAME, help="Name the browser saves the file under.").tag(sync=True)
    mime = Unicode("text/csv", help="MIME type of the file.").tag(sync=True)
    label = Unicode("Download CSV", help="Text of the button.").tag(sync=True)
    request = Int(0, help="Incremented by send_file; each increment is one download.").tag(sync=True)
    disabled = Bool(False, help="Grey the button out.").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._request_handlers = CallbackDispatcher()
        self.on_msg(self._handle_frontend_msg)

    def send_file(self, content: Union[bytes, bytearray, memoryview, str], filename: Optional[str] = None,
                  mime: Optional[str] = None) -> str:
        """Download ``content`` in the browser as ``filename``; return the sanitized name.

        ``str`` content is encoded as UTF-8. The name goes through :func:`sanitize_filename`
        (so ``"../x y.csv"`` is saved as ``"x_y.csv"``).
        """
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_file expects bytes or str, not {type(content).__name__}")
        name = sanitize_filename(self.filename if filename is None else filename)
        with self.hold_sync():  # one message: the browser sees payload, name and request together
            self.payload = base64.b64encode(bytes(content)).decode("ascii")
            self.filename = name
            if mime is not None:
                self.mime = mime
            self.request += 1
        return name

    def on_request(self, callback: Callable[["DownloadButton"], Any], remove: bool = False) -> None:
        """Call ``callback(button)`` when the user clicks the button (``remove=True`` to stop).

        The callback is expected to call :meth:`send_file`.
        """
        self._request_handlers.register_callback(callback, remove=remove)

    def _handle_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "request":
            self._request_handlers(self)
        elif action == "downloaded":
            if content.get("request") == self.request:
                self.payload = ""
        elif action == "error":
            log.warning("The browser could not save %s: %s", self.filename, content.get("message"))
        else:
            log.debug("DownloadButton ignored an unknown front-end message: %r", content)


class UploadButton(_StaticWidget):
    """Open a file from the visitor's computer, with the size limit enforced in the browser.

    * A file above ``max_bytes`` is refused by the browser before a byte of it is read: Python
      only receives its name and size, and calls the :meth:`on_refused` callbacks with
      ``(name, size, reason)``.
    * An accepted file is sent in chunks of ``chunk_bytes`` (binary buffers, one acknowledged
      message each, so no message comes near Voila's websocket limit). Python re-checks
      everything (declared size, offsets, running total against ``max_bytes``) and aborts a
      transfer that breaks a rule, whatever the browser claims. When the last chunk has arrived
      the :meth:`on_upload` callbacks get ``(content: bytes, name: str)``; the bytes are not kept.

    Nothing is written to disk, and the content is never unpickled or executed: it is handed to
    the callbacks as bytes.
    """

    _static_name = "upload.js"
    _esm = _static_esm("upload.js")

    label = Unicode("Open CSV", help="Text of the button.").tag(sync=True)
    accept = Unicode(".csv", help="File types the picker offers (the HTML accept attribute).").tag(sync=True)
    max_bytes = Int(10_000_000, help="Largest file accepted, in bytes.").tag(sync=True)
    chunk_bytes = Int(UPLOAD_CHUNK_BYTES, help="Bytes per message.").tag(sync=True)
    disabled = Bool(False, help="Grey the button out.").tag(sync=True)
    description = Unicode("", help="Tooltip of the button.").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._upload_handlers = CallbackDispatcher()
        self._refused_handlers = CallbackDispatcher()
        self._transfer: Optional[dict] = None
        self.on_msg(self._handle_frontend_msg)

    #: Traits the page may never change: the limits Python enforces. (A visitor's page can send any
    #: widget state update; Voila forwards those.) They are set from Python only.
    _PYTHON_ONLY = frozenset({"max_bytes", "chunk_bytes"})

    def set_state(self, sync_data: dict) -> None:
        """State from the front-end, minus the limits (which only Python sets)."""
        refused = self._PYTHON_ONLY & set(sync_data)
        if refused:
            log.warning("UploadButton ignored a front-end change of %s", ", ".join(sorted(refused)))
            sync_data = {k: v for k, v in sync_data.items() if k not in refused}
        super().set_state(sync_data)

    def on_upload(self, callback: Callable[[bytes, str], Any], remove: bool = False) -> None:
        """Call ``callback(content, name)`` when a file has arrived whole."""
        self._upload_handlers.register_callback(callback, remove=remove)

    def on_refused(self, callback: Callable[[str, int, str], Any], remove: bool = False) -> None:
        """Call ``callback(name, size, reason)`` when a file is refused (by the browser or here)."""
        self._refused_handlers.register_callback(callback, remove=remove)

    def _abort(self, message_id: Any, name: str, size: int, reason: str) -> None:
        self._transfer = None
        self.send({"action": "abort", "id": message_id, "message": f"{name}: {reason}."})
        self._refused_handlers(name, size, reason)

    def _handle_frontend_msg(self, _widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        action, mid = content.get("action"), content.get("id")
        name = str(content.get("name", "") or "upload")[:255]
        if action == "refused":
            size = content.get("size")
            size = size if isinstance(size, int) and not isinstance(size, bool) else -1
            self._refused_handlers(name, size, str(content.get("reason") or "the file was refused")[:300])
        elif action == "begin":
            size = content.get("size")
            if self._transfer is not None:   # another view (or a re-pick) started over: end the old one
                old = self._transfer
                self._transfer = None
                self.send({"action": "abort", "id": old["id"], "message": f"{old['name']}: replaced by a new upload."})
            ok_size = isinstance(size, int) and not isinstance(size, bool) and 0 < size <= self.max_bytes
            if not ok_size:   # plan_upload only lists chunks for an acceptable size: cheap here
                self._abort(mid, name, size if isinstance(size, int) and not isinstance(size, bool) else -1,
                            plan_upload(size, self.max_bytes)["reason"])
                return
            self._transfer = {"id": mid, "name": name, "size": size, "data": bytearray()}
            self.send({"action": "ack", "id": mid, "received": 0})
        elif action == "chunk":
            t = self._transfer
            if t is None or mid != t["id"]:
                # a stale transfer (aborted, replaced, or from another view): tell that view to stop
                self.send({"action": "abort", "id": mid, "message": "The upload was interrupted; try again."})
                return
            data = bytes(buffers[0]) if buffers else b""
            if content.get("offset") != len(t["data"]) or len(data) > self.chunk_bytes \
                    or len(t["data"]) + len(data) > t["size"]:
                self._abort(mid, t["name"], t["size"], "the file arrived garbled (chunks out of order); "
                                                       "try again")
                return
            t["data"] += data
            self.send({"action": "ack", "id": mid, "received": len(t["data"])})
        elif action == "end":
            t = self._transfer
            if t is None or mid != t["id"]:
                self.send({"action": "abort", "id": mid, "message": "The upload was interrupted; try again."})
                return
            self._transfer = None
            if len(t["data"]) != t["size"]:
                self.send({"action": "abort", "id": mid, "message": f"{t['name']}: the upload was incomplete."})
                self._refused_handlers(t["name"], t["size"], "the upload was incomplete; try again")
                return
            self.send({"action": "done", "id": mid})
            self._upload_handlers(bytes(t["data"]), t["name"])
        elif action == "error":
            t, self._transfer = self._transfer, None
            if t is not None:
                self._refused_handlers(t["name"], t["size"], "the browser could not read the file: "
                                       + str(content.get("message", ""))[:200])
        else:
            log.debug("UploadButton ignored an unknown front-end message: %r", content)
