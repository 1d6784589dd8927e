"""Real-browser fixtures: a Voila server started here (one per theme) and a headless Chromium.

* :func:`voila` starts ``msda_widgets.cli.voila_command(...)`` — the command ``msda-widgets demo``
  runs — on a free port, with small training settings (``MSDA_WIDGETS_SETTINGS``), waits for
  HTTP 200 and stops it (and its kernels) at the end of the session. Its log is saved in the
  artifacts folder.
* :func:`browser` is Debian's Chromium driven by Playwright (never a downloaded browser).
  Without ``/usr/bin/chromium`` the tests are skipped on a developer machine and fail under CI
  (``CI`` set), so that CI cannot pass without running them.
* :func:`page` is a fresh browser context (and so a fresh kernel) per test, with every console
  error and uncaught page error recorded; the test fails at teardown if one is not known noise
  from third-party code (see :data:`KNOWN_NOISE`).

Screenshots and downloads go to ``test-artifacts/browser/`` at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("MSDA_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Small, quick training for the app under test (the demo data: 5,000 rows x 8 sensors).
#: ``patience=0`` turns early stopping off, so a long run lasts until Stop is pressed.
SETTINGS = {"epochs": 4, "patience": 0, "seed": 0}
VIEWPORT = {"width": 1600, "height": 2000}
SERVER_START_S = 180
#: Playwright's default wait for every action and assertion (ms). Two cores shared with other
#: test runs: kernels start and import torch while the page renders.
DEFAULT_TIMEOUT_MS = 60_000

#: Console errors that come from third-party code and do not mean anything is broken, each with
#: why. A pattern matches the message text; ``url`` (a prefix) the source it came from.
KNOWN_NOISE = [
    # Voila's page links Font Awesome's CSS from a CDN; this machine is offline. The icons still
    # show: the widgets bundle carries its own copy of the font.
    dict(text=re.compile(r"^Failed to load resource: net::ERR_NAME_NOT_RESOLVED$"),
         url="https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@"),
    # bqplot lays out figures that are created hidden (the explanation tabs before the first
    # explanation, the inactive "Model internals" tab) at width 0, so its clip rectangles get
    # width/height = -(margins); Chrome reports each. The figures lay out again when shown (the
    # tests check the shown charts).
    dict(text=re.compile(r'^Error: <rect> attribute (width|height): A negative value is not valid\. '
                         r'\("-\d+(\.\d+)?"\)$'),
         url=None),
]


def _chromium_missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}. The browser tests must run in CI: install Debian's chromium "
                    f"(apt-get install chromium; .ci/run does this).", pytrace=False)
    pytest.skip(f"{reason}; browser tests skipped (they run in CI)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


# ------------------------------------------------------------------------------------------ server

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VoilaServer:
    """One ``msda-widgets demo``-style Voila server (the CLI's command line and environment)."""

    theme: str
    log_path: Path
    workdir: Path
    port: int = field(default_factory=_free_port)
    proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "VoilaServer":
        from msda_widgets.cli import voila_command

        cmd, env = voila_command(None, self.port, self.theme)
        env["MSDA_WIDGETS_SETTINGS"] = json.dumps(SETTINGS)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            # its own process group: stopping it never signals pytest
            self.proc = subprocess.Popen(cmd, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        # A static file of Voila's page, not the page itself: GET / would start a kernel.
        probe = self.url + "voila/static/voila.js"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Voila exited with code {self.proc.returncode} before serving; its log "
                                   f"({self.log_path}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(probe, timeout=10) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Voila did not answer {probe} with 200 within {SERVER_START_S} s; its "
                                   f"log:\n{self.log_tail()}")
            time.sleep(0.25)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (Voila then shuts its kernels down), then SIGKILL for whatever is left."""
        proc = self.proc
        if proc is None:
            return
        import psutil

        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for child in family:  # kernels Voila did not manage to shut down
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """``voila(theme)`` -> the URL of a running dashboard server for that theme (started once)."""
    servers: dict[str, VoilaServer] = {}

    def url(theme: str = "light") -> str:
        if theme not in servers:
            server = VoilaServer(theme, ARTIFACTS / f"voila-{theme}.log",
                                 tmp_path_factory.mktemp(f"voila-{theme}"))
            servers[theme] = server.start()
        return servers[theme].url

    try:
        yield url
    finally:
        for server in servers.values():
            server.stop()


# ----------------------------------------------------------------------------------------- browser

@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        _chromium_missing(f"{CHROMIUM} does not exist")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _chromium_missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as pw:
        # launch() gives every run a fresh temporary profile (user-data-dir), removed on close
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsoleLog:
    """Console errors and uncaught page errors of one page."""

    errors: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def on_console(self, message) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        text = message.text
        if any(n["text"].search(text) and (n["url"] is None or url.startswith(n["url"])) for n in KNOWN_NOISE):
            self.ignored.append(text)
        else:
            self.errors.append(f"console.error: {text} (at {url or 'unknown'})")

    def on_page_error(self, error) -> None:
        self.errors.append(f"uncaught {error.name}: {error.message}\n{error.stack or ''}")

    def assert_clean(self) -> None:
        assert not self.errors, "errors in the browser console:\n" + "\n".join(self.errors)


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


@pytest.fixture
def page(browser, console: ConsoleLog, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A new page in a fresh context; on failure a screenshot ``FAILED-<test>.png`` is saved."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    # Voila's page shuts its kernel down on unload with a POST that carries the `_xsrf` cookie,
    # but Voila 0.5 never sets that cookie, so the POST is refused and the kernel lives on until
    # it is culled (10 idle minutes). A cookie of our own (any value: the double-submit check
    # compares the cookie with the form field) lets the page clean up after each test.
    context.add_cookies([{"name": "_xsrf", "value": "msda-browser-tests", "domain": "127.0.0.1", "path": "/"}])
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    page.on("console", console.on_console)
    page.on("pageerror", console.on_page_error)
    try:
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            page.screenshot(path=str(artifacts / f"FAILED-{name}.png"))
            print("console errors:", *console.errors, sep="\n")  # shown with the failure
        else:
            console.assert_clean()
    finally:
        try:  # leaving the page runs Voila's unload handler, which shuts the page's kernel down
            page.goto("about:blank", timeout=10_000)
        except Exception as exc:  # noqa: BLE001 - best effort; stopping the server ends it anyway
            print(f"could not leave the page: {exc}")
        context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
