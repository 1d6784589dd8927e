"""Memory of one Voila visitor: the kernel's RSS at each step of a visit, in a real browser.

Starts the app as ``msda-widgets demo`` does (on a free port, the built-in data), opens it in
Debian's Chromium (Playwright, never a downloaded browser), and reads the RSS of the visitor's
kernel process (psutil) when the page has rendered, after Train, after an explanation, after
the "Profile sensors" tab; then closes the page and says whether the kernel was shut down.
Also the page's time to first render. Needs /usr/bin/chromium and the [test] extra.

    .venv/bin/python benchmarks/bench_voila_memory.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msda_widgets.cli import voila_command  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kernels(server: subprocess.Popen) -> list[psutil.Process]:
    return [c for c in psutil.Process(server.pid).children(recursive=True)
            if "ipykernel" in " ".join(c.cmdline())]


def mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2 ** 20


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = free_port()
    cmd, env = voila_command(None, port, "light")
    env["MSDA_WIDGETS_SETTINGS"] = '{"epochs": 4, "seed": 0}'
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "voila/static/none", timeout=2)
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(1)
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # a context of its own: browser.new_page() closes its context with the page, which can
            # drop the page's closing request (a real tab closing sends it)
            context = browser.new_context(viewport={"width": 1600, "height": 2000})
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url, wait_until="domcontentloaded")
            page.locator(".msda-status").filter(has_text="Loaded plant sensors").wait_for(timeout=180_000)
            rows.append(("page rendered (status line shows the data)", time.perf_counter() - t0, None))
            (kernel,) = kernels(server)
            rows.append(("kernel RSS: page rendered", None, mb(kernel)))
            time.sleep(8)   # the background warm-up imports torch and shap after the page is drawn
            rows.append(("kernel RSS: after the background warm-up", None, mb(kernel)))
            page.locator("button.msda-train").click()
            page.locator(".msda-status").filter(has_text="Trained in").wait_for(timeout=180_000)
            rows.append(("kernel RSS: after Train (4 epochs)", None, mb(kernel)))
            page.get_by_role("button", name="Next").click()   # explains the first anomaly
            page.locator(".msda-explain-bars g.bargroup rect.bar").first.wait_for(timeout=60_000)
            rows.append(("kernel RSS: after an explanation (shap)", None, mb(kernel)))
            page.get_by_role("tab", name="Profile sensors").click()
            page.locator(".msda-profile-table tbody tr").first.wait_for(timeout=60_000)
            rows.append(("kernel RSS: after the Profile sensors tab", None, mb(kernel)))
            page.close(run_before_unload=True)
            deadline = time.monotonic() + 30
            while kernels(server) and time.monotonic() < deadline:
                time.sleep(0.5)
            left = kernels(server)
            rows.append((f"page closed: {'kernel shut down' if not left else 'KERNEL STILL RUNNING'}",
                         None, mb(left[0]) if left else None))
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"{'step':<48}{'seconds':>9}{'RSS MB':>9}")
    for name, seconds, rss in rows:
        print(f"{name:<48}{'' if seconds is None else f'{seconds:.1f}':>9}{'' if rss is None else f'{rss:.0f}':>9}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
