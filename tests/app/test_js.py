"""The JavaScript front-ends: node's own unit tests, JS/Python agreement, the anywidget classes.

(a) and (b) need ``node`` on PATH and are skipped without it (CI has node). (c) needs the
bundles in msda_widgets/static/, which the package build writes (``pip install -e .``).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from msda_widgets.app import widgets
from msda_widgets.app.widgets import (
    ACTIONS,
    KEY_ACTIONS,
    DownloadButton,
    FrontendNotBuiltError,
    KeyboardNav,
    format_mb,
    key_to_action,
    plan_upload,
    sanitize_filename,
)

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH (CI has it)")

KEYS = [
    "ArrowRight", "ArrowLeft", "ArrowUp", "ArrowDown", "Home", "End", "Enter", "Escape", "Tab",
    "n", "N", "p", "P", "j", "J", "k", "K", "e", "E", "x", " ", "", "enter", "arrowright",
    "constructor", "toString", "__proto__", "hasOwnProperty", "valueOf",
]

FILENAMES = [
    "", "anomalies.csv", "a b.csv", "../../etc/passwd", "..\\..\\windows\\win.ini", "/abs/path/x.csv",
    "C:\\Users\\me\\scores.csv", "ü.csv", "Ærø résumé.csv", "ｆｕｌｌｗｉｄｔｈ.csv", "naïve café.txt",
    "ﬁle.csv", "\u00a0nbsp\u2003em.csv", "bad\x00name\x1f\x7f.csv", "tab\there\nnewline\r.csv",
    "\x1c\x1d\x1e\x1f.csv", "\u0085next\u2028line.csv", "\u202eevil\u202dfdp.csv",
    'quote"s:and*stars?<>|.csv', "report 2024-01-01 (v2).csv", ".hidden", "trailing.", "..", ".",
    "...csv", "   ", "////", "😀", "😀.csv", "日本語.csv", "résumé", "a" * 100, "a" * 101,
    "x" * 300 + ".csv", "y" * 150, "a." + "b" * 120, "y" * 99 + "." + "b" * 120,
    "y" * 94 + "...." + "z" * 20 + ".csv", "é" * 60 + "z" * 60 + ".csv", "ü" * 200 + ".csv",
    "name.tar.gz", "z" * 120 + ".verylongextension1234", "dir/" + "q" * 200 + ".parquet",
    "-leading-dash.csv", "___.csv", "a/b\\c/d.csv", ".csv", "../.bashrc", "日本語.json",
    "." * 150 + "x", "." + "w" * 200 + ".csv",
]


#: (size, max_bytes, chunk_bytes) cases for plan_upload / planUpload.
MIB = 1024 * 1024
UPLOADS = [
    [0, 10 * MIB, MIB], [1, 10 * MIB, MIB], [MIB, 10 * MIB, MIB], [MIB + 1, 10 * MIB, MIB],
    [10 * MIB, 10 * MIB, MIB], [10 * MIB + 1, 10 * MIB, MIB], [50 * 10 ** 6, 10 * MIB, MIB],
    [-1, 10 * MIB, MIB], [1.5, 10 * MIB, MIB], [None, 10 * MIB, MIB], ["12", 10 * MIB, MIB],
    [7, 10, 3], [10, 10, 3], [11, 10, 3], [5, 100, 0], [2 ** 53, 2 ** 60, MIB],
]
MEGABYTES = [0, 1, 999_999, 10 * MIB, 50_000_000, 52_428_800, 123_456_789]


def _run_node(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          encoding="utf-8", **kwargs)


# -- (a) node's unit tests -----------------------------------------------------------------------


@needs_node
def test_node_unit_tests_pass():
    # Explicit files, not `node --test js/test/`: a directory argument only works on node <= 20.
    files = sorted(str(p.relative_to(ROOT)) for p in (JS / "test").glob("*.test.mjs"))
    assert files, "no js/test/*.test.mjs found"
    done = _run_node(["--test", *files])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# fail 0" in done.stdout
    assert "# pass 0\n" not in done.stdout


# -- (b) the JS and Python twins agree -----------------------------------------------------------

_AGREEMENT_SCRIPT = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const logic = await import(pathToFileURL(process.argv[1]).href);
const cases = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify({
  keys: cases.keys.map((k) => logic.keyToAction(k)),
  filenames: cases.filenames.map((n) => logic.sanitizeFilename(n)),
  table: logic.KEY_ACTIONS,
  actions: logic.ACTIONS,
  constants: [logic.DEFAULT_FILENAME, logic.DEFAULT_STEM, logic.MAX_FILENAME_LENGTH, logic.MAX_EXTENSION_LENGTH,
              logic.UPLOAD_CHUNK_BYTES],
  uploads: cases.uploads.map(([size, max, chunk]) => logic.planUpload(size, max, chunk)),
  mb: cases.mb.map((n) => logic.formatMB(n)),
}));
"""


@pytest.fixture(scope="module")
def js_results() -> dict:
    if NODE is None:
        pytest.skip("node is not on PATH (CI has it)")
    cases = json.dumps({"keys": KEYS, "filenames": FILENAMES, "uploads": UPLOADS, "mb": MEGABYTES},
                       ensure_ascii=True)
    done = _run_node(["--input-type=module", "-e", _AGREEMENT_SCRIPT, str(JS / "src" / "logic.js")],
                     input=cases)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_key_tables_agree(js_results):
    assert js_results["table"] == KEY_ACTIONS
    assert tuple(js_results["actions"]) == ACTIONS
    assert set(KEY_ACTIONS.values()) == set(ACTIONS)


def test_constants_agree(js_results):
    assert js_results["constants"] == [widgets.DEFAULT_FILENAME, widgets.DEFAULT_STEM,
                                       widgets.MAX_FILENAME_LENGTH, widgets.MAX_EXTENSION_LENGTH,
                                       widgets.UPLOAD_CHUNK_BYTES]


@pytest.mark.parametrize("i,case", list(enumerate(UPLOADS)))
def test_upload_plans_agree(js_results, i, case):
    assert plan_upload(*case) == js_results["uploads"][i]


def test_upload_plans_cover_the_file_exactly():
    plan = plan_upload(10 * MIB, 10 * MIB)
    assert plan["ok"] and len(plan["chunks"]) == 10
    assert plan["chunks"][0][0] == 0 and plan["chunks"][-1][1] == 10 * MIB
    assert all(a[1] == b[0] for a, b in zip(plan["chunks"], plan["chunks"][1:]))
    refused = plan_upload(50 * 10 ** 6, 10 * MIB)
    assert not refused["ok"] and refused["reason"] == "the file is 50.0 MB and uploads are limited to 10.5 MB"


def test_megabytes_agree(js_results):
    assert [format_mb(n) for n in MEGABYTES] == js_results["mb"]


@pytest.mark.parametrize("i,key", list(enumerate(KEYS)))
def test_key_to_action_agrees(js_results, i, key):
    assert key_to_action(key) == js_results["keys"][i]


@pytest.mark.parametrize("i,name", list(enumerate(FILENAMES)))
def test_sanitize_filename_agrees(js_results, i, name):
    assert sanitize_filename(name) == js_results["filenames"][i]


def test_python_twins_on_known_cases():
    # Independent of node: pins the behaviour both sides must have.
    assert key_to_action("ArrowRight") == "next"
    assert key_to_action("N") is None
    assert key_to_action(" ") is None
    assert key_to_action("constructor") is None
    assert key_to_action(None) is None
    assert sanitize_filename("") == "download.csv"
    assert sanitize_filename(None) == "download.csv"
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("a b.csv") == "a_b.csv"
    assert sanitize_filename("ü.csv") == "u.csv"
    assert sanitize_filename("日本語.csv") == "download.csv"
    assert sanitize_filename(".bashrc") == "download.bashrc"
    assert sanitize_filename("..") == "download.csv"
    assert sanitize_filename("bad\x00name\x1f.csv") == "badname.csv"
    long = sanitize_filename("x" * 300 + ".csv")
    assert len(long) == 100 and long.endswith(".csv")


# -- (c) the widgets -----------------------------------------------------------------------------


@pytest.fixture
def built():
    for cls in (KeyboardNav, DownloadButton):
        if not cls.esm_path().is_file():
            pytest.fail(f"{cls.esm_path()} is missing: build with `pip install -e .` "
                        "or `npm --prefix js run build`")


def test_esm_points_to_built_files(built):
    for cls, name in ((KeyboardNav, "keyboard.js"), (DownloadButton, "download.js")):
        path = cls.esm_path()
        assert path == widgets.STATIC_DIR / name
        assert path.is_file() and path.stat().st_size > 0
        w = cls()
        try:
            assert w._esm == path.read_text(encoding="utf-8")
            assert "export" in w._esm and "default" in w._esm
        finally:
            w.close()


def test_keyboard_nav_forwards_frontend_actions(built):
    nav = KeyboardNav()
    got = []
    nav.on_action(got.append)
    for action in ("next", "previous", "explain", "first", "last"):
        nav._handle_custom_msg({"action": action}, [])
    nav._handle_custom_msg({"action": "delete_everything"}, [])
    nav._handle_custom_msg("not a dict", [])
    assert got == ["next", "previous", "explain", "first", "last"]
    nav.on_action(got.append, remove=True)
    nav._handle_custom_msg({"action": "next"}, [])
    assert len(got) == 5
    assert nav.presses == 0  # counted by the browser, not by Python
    nav.close()


def test_keyboard_nav_callback_mock(built):
    nav = KeyboardNav()
    cb = mock.Mock()
    nav.on_action(cb)
    nav._handle_custom_msg({"action": "next"}, [])
    cb.assert_called_once_with("next")
    nav.close()


def test_download_button_send_file(built):
    button = DownloadButton()
    assert (button.request, button.payload, button.mime) == (0, "", "text/csv")
    changes = []
    button.observe(lambda change: changes.append(change["name"]), names=["payload", "filename", "request"])
    name = button.send_file(b"a,b\n1,2\n", "x.csv")
    assert name == "x.csv" == button.filename
    assert base64.b64decode(button.payload) == b"a,b\n1,2\n"
    assert button.request == 1
    assert changes[-1] == "request"  # the request comes last, after payload and name

    button.send_file("é,ü\n", "../../secret dir/my file.csv", mime="text/plain")
    assert button.request == 2
    assert button.filename == "my_file.csv"
    assert button.mime == "text/plain"
    assert base64.b64decode(button.payload).decode("utf-8") == "é,ü\n"

    button.send_file(b"")  # keeps the current name
    assert button.filename == "my_file.csv" and button.request == 3 and button.payload == ""
    with pytest.raises(TypeError):
        button.send_file(12345, "x.csv")
    button.close()


def test_download_button_click_flow_and_ack(built):
    button = DownloadButton(label="Export anomalies")
    button.on_request(lambda b: b.send_file(b"t,score\n", "anomalies.csv"))
    button._handle_custom_msg({"action": "request"}, [])
    assert button.request == 1 and base64.b64decode(button.payload) == b"t,score\n"
    # a stale acknowledgement does not clear a newer payload
    button._handle_custom_msg({"action": "downloaded", "request": 0}, [])
    assert button.payload
    button._handle_custom_msg({"action": "downloaded", "request": 1}, [])
    assert button.payload == ""
    button._handle_custom_msg({"action": "error", "request": 1, "message": "boom"}, [])
    button._handle_custom_msg({"action": "unknown"}, [])
    assert button.request == 1
    button.close()


def test_unbuilt_frontend_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(widgets, "STATIC_DIR", tmp_path)
    with pytest.raises(FrontendNotBuiltError, match=r"npm --prefix js run build"):
        KeyboardNav()
    with pytest.raises(FrontendNotBuiltError, match=r"pip install -e \."):
        DownloadButton()


def test_module_imports_without_bundles(tmp_path):
    # A never-built checkout still imports the module; the error comes at instantiation, and a
    # build made after the import is picked up by the next instantiation. Fresh interpreter,
    # with the bundles hidden while the module is imported.
    script = (
        "import pathlib, unittest.mock as m\n"
        "real = pathlib.Path.is_file\n"
        "hide = lambda self: False if 'static' in self.parts else real(self)\n"
        "with m.patch.object(pathlib.Path, 'is_file', hide):\n"
        "    import msda_widgets.app.widgets as w\n"
        "    assert isinstance(w.KeyboardNav._esm, str) and 'not built' in w.KeyboardNav._esm\n"
        "    try:\n"
        "        w.KeyboardNav()\n"
        "    except w.FrontendNotBuiltError as e:\n"
        "        print('refused:', e)\n"
        "nav = w.KeyboardNav()\n"
        "assert nav._esm == w.KeyboardNav.esm_path().read_text(encoding='utf-8')\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and done.stdout.strip().endswith("ok")


@needs_node
def test_built_bundles_are_anywidget_modules(built):
    # What anywidget's front-end does with the file: import it and use the default export
    # (a named `render` export would send anywidget down its deprecated path).
    script = """
import { pathToFileURL } from "node:url";
const out = {};
for (const file of process.argv.slice(1)) {
  const mod = await import(pathToFileURL(file).href);
  out[file.split(/[\\\\/]/).pop()] = {
    named_render: typeof mod.render,
    render: typeof mod.default?.render,
    initialize: typeof mod.default?.initialize,
  };
}
process.stdout.write(JSON.stringify(out));
"""
    files = [str(KeyboardNav.esm_path()), str(DownloadButton.esm_path())]
    done = _run_node(["--input-type=module", "-e", script, *files])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "keyboard.js": {"named_render": "undefined", "render": "function", "initialize": "undefined"},
        "download.js": {"named_render": "undefined", "render": "function", "initialize": "function"},
    }
    for path in files:
        # Self-contained: logic.js is bundled in, nothing is imported at load time (a blob: URL,
        # which is how anywidget loads the module, cannot resolve relative imports).
        text = Path(path).read_text(encoding="utf-8")
        assert not re.search(r"""\bimport\s*[{*"']|\bfrom\s*["']\.""", text), path
