"""What a Voila visitor can and cannot do, checked against a real server (issue 6, "Voila exposure").

* A visitor cannot run code: the kernel's websocket forwards only widget (comm) messages and
  kernel info requests; an ``execute_request`` sent by hand is dropped. The positive control
  (a ``comm_info_request`` on the same socket is answered) shows that the socket itself works.
* The Jupyter REST API (kernels, contents, terminals, files) is not served.
* A file above the upload limit is refused by the browser before a byte is sent, and the
  visitor's data, model and results stay on screen and usable.
* Two visitors get separate kernels and separate state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.browser.test_dashboard_browser import (
    DEMO_SENSORS,
    STEP_S,
    _ms,
    anomaly_count,
    click_a_red_point,
    open_csv,
    open_dashboard,
    screenshot,
    status,
    train,
)
from tests.conftest import make_series

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or, under CI, fails) with the reason
    Page = object  # type: ignore[misc,assignment]
    expect = None

pytestmark = pytest.mark.browser

KERNEL_ID = re.compile(r'"kernelId": "([0-9a-f-]{36})"')


def _kernel_id(html: str) -> str:
    match = KERNEL_ID.search(html)
    assert match, "the Voila page names no kernel"
    return match.group(1)


def _message(msg_type: str, content: dict) -> str:
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "visitor",
                   "session": "probe", "date": "", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []})


async def _talk_to_kernel(url: str, kernel_id: str, code: str) -> list[str]:
    """Send ``code`` as an execute_request, then a comm_info_request and a kernel_info_request on
    the page's kernel websocket; return the types of the replies seen within 20 s."""
    from tornado.websocket import websocket_connect

    ws_url = url.replace("http://", "ws://").rstrip("/") + f"/api/kernels/{kernel_id}/channels?session_id=probe"
    ws = await websocket_connect(ws_url)
    try:
        await ws.write_message(_message("execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}))
        await ws.write_message(_message("comm_info_request", {}))
        await ws.write_message(_message("kernel_info_request", {}))
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while "kernel_info_reply" not in seen and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.read_message(), timeout=max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
            if raw is None:
                break
            if isinstance(raw, str):
                seen.append(json.loads(raw)["header"]["msg_type"])
        # Give a forwarded execute_request time to finish if it had been forwarded after all.
        time.sleep(2)
        return seen
    finally:
        ws.close()


def record_sent_frames(page: Page) -> list[int]:
    """Sizes of the websocket frames the page sends (register before the page opens its socket)."""
    frames: list[int] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(len(payload))))
    return frames


def test_a_visitor_cannot_run_code_in_the_kernel(voila, tmp_path: Path) -> None:
    url = voila("light")
    with urllib.request.urlopen(url, timeout=180) as response:  # a visit: Voila starts a kernel
        kernel_id = _kernel_id(response.read().decode("utf-8"))
    marker = tmp_path / "visitor-code-ran"
    code = f"open({str(marker)!r}, 'w').write('executed')"
    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        seen = pool.submit(asyncio.run, _talk_to_kernel(url, kernel_id, code)).result(timeout=120)
    assert "comm_info_reply" in seen and "kernel_info_reply" in seen, seen  # the socket works...
    assert "execute_reply" not in seen and "execute_result" not in seen and "stream" not in seen, seen
    assert not marker.exists()  # ...but the code never ran


@pytest.mark.parametrize("path", ["api/kernels", "api/contents", "api/terminals", "api/sessions",
                                  "api/kernelspecs", "files/README.md", "tree", "lab"])
def test_the_jupyter_api_is_not_served(voila, path: str) -> None:
    url = voila("light") + path
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = response.read()
            status_code = response.status
    except urllib.error.HTTPError as exc:
        status_code, body = exc.code, b""
    assert status_code in (403, 404), (path, status_code)
    assert b'"kernel' not in body and b'"content"' not in body
    request = urllib.request.Request(voila("light") + "api/kernels", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no new kernels on request either
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code in (403, 404, 405)


def test_a_50_mb_upload_is_refused_in_the_browser_and_the_work_is_kept(
        page: Page, voila, tmp_path: Path, artifacts: Path) -> None:
    frames = record_sent_frames(page)
    open_dashboard(page, voila("light"))
    train(page)
    before = anomaly_count(page)
    big = tmp_path / "big_export.csv"
    line = b"2024-01-01 00:00:00,1.25,2.5,3.75\n"
    with big.open("wb") as f:
        f.write(b"time,a,b,c\n")
        f.write(line * (50_000_000 // len(line) + 1))
    assert big.stat().st_size > 50_000_000
    start = time.monotonic()
    open_csv(page, big)
    expect(status(page)).to_contain_text("Could not open big_export.csv", timeout=_ms(STEP_S))
    refused_after = time.monotonic() - start
    message = status(page).inner_text()
    assert "50.0 MB" in message and "limited to 10.0 MB" in message and "The current data is kept." in message
    assert frames and max(frames) < 100_000  # the page talked to its kernel, but no chunk of the file travelled
    assert refused_after < 30
    # the data, the model and its results are still there, and still work
    expect(page.locator(".msda-data-info")).to_contain_text("plant sensors")
    assert anomaly_count(page) == before
    click_a_red_point(page)
    expect(page.locator(".msda-explain-bars g.bargroup rect.bar")).to_have_count(DEMO_SENSORS, timeout=_ms(STEP_S))
    # the bars' sensor names are drawn last: wait for them, so that the screenshot shows the chart
    expect(page.locator(".msda-explain-bars .axis text", has_text="voltage").first).to_be_visible(timeout=_ms(STEP_S))
    screenshot(page, artifacts, "upload-refused.png")


def test_an_upload_just_under_the_limit_arrives_in_chunks(page: Page, voila, tmp_path: Path) -> None:
    frames = record_sent_frames(page)
    open_dashboard(page, voila("light"))
    csv = tmp_path / "nine_mb.csv"
    frame = make_series(n=100_000, n_sensors=6, seed=3)
    frame.to_csv(csv, float_format="%.9f")
    size = csv.stat().st_size
    assert 3_000_000 < size < 10_000_000, size  # several chunks, under the limit
    open_csv(page, csv)
    expect(status(page)).to_contain_text("Loaded nine_mb.csv: 100,000 rows × 6 sensors", timeout=_ms(STEP_S * 2))
    big_frames = [n for n in frames if n > 100_000]
    assert len(big_frames) >= size // 2 ** 20  # one message per 1 MiB chunk
    assert max(frames) < 2 * 2 ** 20


def test_two_visitors_get_separate_kernels_and_state(page: Page, browser, voila, tmp_path: Path,
                                                     console) -> None:
    url = voila("light")
    open_dashboard(page, url)
    other_context = browser.new_context(viewport={"width": 1600, "height": 2000})
    try:
        other = other_context.new_page()
        other.on("pageerror", console.on_page_error)
        open_dashboard(other, url)
        assert _kernel_id(page.content()) != _kernel_id(other.content())
        csv = tmp_path / "only_mine.csv"
        make_series(n=600, n_sensors=3, seed=2).to_csv(csv)
        open_csv(page, csv)
        expect(status(page)).to_contain_text("Loaded only_mine.csv: 600 rows × 3 sensors", timeout=_ms(STEP_S))
        train(other)  # the other visitor trains on the demo data meanwhile
        assert anomaly_count(other) > 0
        expect(other.locator(".msda-data-info")).to_contain_text("plant sensors")
        expect(other.locator(".msda-timeline .g_legend text.legendtext")).to_have_count(DEMO_SENSORS)
        # and the first visitor saw none of it: their own data, nothing trained
        expect(page.locator(".msda-data-info")).to_contain_text("only_mine.csv")
        expect(page.locator(".msda-timeline .g_legend text.legendtext")).to_have_count(3)
        assert "Trained in" not in status(page).inner_text()
    finally:
        other_context.close()


def _kernel_exists(url: str, kernel_id: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}api/kernels/{kernel_id}", timeout=30) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise


def test_closing_the_page_shuts_its_kernel_down(browser, voila) -> None:
    url = voila("light")
    context = browser.new_context()
    try:
        page = context.new_page()
        open_dashboard(page, url)
        kernel_id = _kernel_id(page.content())
        assert _kernel_exists(url, kernel_id)
        page.close(run_before_unload=True)
        deadline = time.monotonic() + 30
        while _kernel_exists(url, kernel_id) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _kernel_exists(url, kernel_id), "a closed page kept its kernel (memory) alive"
    finally:
        context.close()
