"""The dashboard in a real headless Chromium against a real Voila server (see conftest.py).

Each test opens the page in a fresh browser context (so Voila gives it a fresh kernel), acts
like a user — mouse clicks and drags, keys, file choosers — and asserts what the page shows:
the status line, the number of bars and points drawn in the bqplot SVG, the anomaly count.
Every test also fails if the browser console shows an error that is not known third-party
noise (conftest.KNOWN_NOISE).

The demo data the server opens: 5,000 hourly rows x 8 sensors ("plant sensors").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import make_series

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or, under CI, fails) with the reason
    Page = object  # type: ignore[misc,assignment]
    expect = None

pytestmark = pytest.mark.browser

DEMO_ROWS, DEMO_SENSORS = 5000, 8
LOAD_S = 120            # page render: a new kernel imports the app (2 shared cores)
TRAIN_S = 120           # the first training run of a kernel also imports torch
STEP_S = 60             # one interaction (explain, threshold, keyboard step)
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d): score ")


# ----------------------------------------------------------------------------------------- helpers

def _ms(seconds: float) -> float:
    return seconds * 1000.0


def open_dashboard(page: Page, url: str) -> None:
    """Go to the dashboard and wait until the data is drawn (status line and sensor legend)."""
    page.goto(url, wait_until="domcontentloaded", timeout=_ms(LOAD_S))
    expect(status(page)).to_contain_text(f"Loaded plant sensors: {DEMO_ROWS:,} rows × {DEMO_SENSORS} sensors",
                                         timeout=_ms(LOAD_S))
    expect(page.locator(".msda-timeline .g_legend text.legendtext")).to_have_count(DEMO_SENSORS,
                                                                                   timeout=_ms(LOAD_S))


def status(page: Page):
    return page.locator(".msda-status")


def train(page: Page) -> None:
    """Press Train and wait for the finished run's message."""
    page.locator("button.msda-train").click()
    expect(status(page)).to_contain_text("Trained in", timeout=_ms(TRAIN_S))
    expect(page.locator(".msda-timeline .dot").first).to_be_visible(timeout=_ms(STEP_S))


def open_csv(page: Page, path: Path) -> None:
    """Open the "Data" section, press "Open CSV" and pick ``path`` in the file chooser."""
    button = page.locator(".msda-upload")
    if not button.is_visible():
        page.get_by_text("Data", exact=True).click()
    with page.expect_file_chooser() as chooser:
        button.click()
    chooser.value.set_files(str(path))


def anomaly_count(page: Page) -> int:
    text = page.locator(".msda-anomaly-count").inner_text()
    match = re.search(r"([\d,]+) anomalies", text)
    assert match, f"no anomaly count in {text!r}"
    return int(match.group(1).replace(",", ""))


def count_text(n: int) -> re.Pattern:
    """"1,234 anomalies" as the page writes it (and not the end of "11,234 anomalies")."""
    return re.compile(rf"(?<![\d,]){n:,} anomalies")


def selected_time(page: Page) -> str:
    """The timestamp the status line names for the explained anomaly."""
    text = status(page).inner_text().strip()
    match = TIMESTAMP.match(text)
    assert match, f"the status line does not name an explained point: {text!r}"
    return match.group(1)


def loss_points(page: Page) -> int:
    """Points drawn on the loss curve (training + validation), legend symbols excluded."""
    return page.locator(".msda-loss g.curve path.dot").count()


def click_a_red_point(page: Page) -> None:
    """Click, with the mouse, the centre of a flagged point that nothing covers."""
    xy = page.evaluate("""() => {
        for (const dot of document.querySelectorAll('.msda-timeline .dot')) {
            const r = dot.getBoundingClientRect();
            const x = r.x + r.width / 2, y = r.y + r.height / 2;
            if (r.width > 0 && document.elementFromPoint(x, y) === dot) return [x, y];
        }
        return null;
    }""")
    assert xy is not None, "no flagged point on the timeline can be clicked (all covered?)"
    page.mouse.click(*xy)


def luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of an ``rgb(...)``/``rgba(...)`` CSS colour."""
    values = [float(v) for v in re.findall(r"[\d.]+", css_colour)[:3]]
    assert len(values) == 3, css_colour
    r, g, b = (v / 255.0 for v in values)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def computed(page: Page, selector: str, prop: str) -> str:
    return page.locator(selector).first.evaluate(f"e => getComputedStyle(e).{prop}")


def screenshot(page: Page, artifacts: Path, name: str) -> None:
    page.locator(".msda-dashboard").screenshot(path=str(artifacts / name), animations="disabled")


# ------------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("theme", ["light", "dark"])
def test_page_renders_without_console_errors(page: Page, voila, console, artifacts: Path, theme: str) -> None:
    open_dashboard(page, voila(theme))
    expect(page.locator("button.msda-train")).to_be_enabled()
    expect(page.locator("button.msda-stop")).to_be_disabled()
    expect(page.locator(".msda-anomaly-count")).to_contain_text("Train a model")
    expect(page.locator(".msda-keyboard .msda-keyboard-nav")).to_be_visible()
    expect(page.locator(".msda-export button")).to_be_disabled()  # nothing to export yet
    plot_area = luminance(computed(page, ".msda-timeline rect.plotarea_background", "fill"))
    text = luminance(computed(page, ".msda-status div", "color"))
    if theme == "dark":
        root = luminance(computed(page, ".msda-dashboard", "backgroundColor"))
        assert root < 0.15 and plot_area < 0.15, (root, plot_area)
        assert text > 0.5, text
    else:
        assert plot_area > 0.85, plot_area
        assert text < 0.5, text
    screenshot(page, artifacts, f"dashboard-{theme}-loaded.png")
    console.assert_clean()


def test_train_grows_the_loss_curve_and_stop_ends_the_run(page: Page, voila) -> None:
    open_dashboard(page, voila("light"))
    # a long run, so that it is still going when we look twice and press Stop
    page.get_by_text("Model", exact=True).click()
    epochs = page.locator(".msda-epochs input")
    epochs.fill("1000")
    epochs.press("Enter")
    page.locator("button.msda-train").click()
    expect(status(page)).to_contain_text("up to 1000 epochs", timeout=_ms(STEP_S))
    expect(page.locator("button.msda-stop")).to_be_enabled()
    expect(page.locator("button.msda-train")).to_be_disabled()

    page.wait_for_function("() => document.querySelectorAll('.msda-loss g.curve path.dot').length >= 2",
                           timeout=_ms(TRAIN_S))
    first = loss_points(page)
    page.wait_for_function("n => document.querySelectorAll('.msda-loss g.curve path.dot').length > n",
                           arg=first, timeout=_ms(STEP_S))
    assert loss_points(page) > first
    expect(page.locator(".msda-progress-label")).to_contain_text("epoch")

    page.locator("button.msda-stop").click()
    expect(status(page)).to_contain_text("stopped by you after", timeout=_ms(STEP_S))
    expect(page.locator("button.msda-train")).to_be_enabled()
    expect(page.locator("button.msda-stop")).to_be_disabled()
    done = re.search(r"after (\d+) complete epochs", status(page).inner_text())
    assert done and 1 <= int(done.group(1)) < 1000
    expect(page.locator(".msda-progress-label")).to_contain_text("stopped")
    # the stopped run's best weights are used: the anomalies are there
    assert anomaly_count(page) > 0


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_clicking_a_red_point_explains_it_sensor_by_sensor(page: Page, voila, artifacts: Path, theme: str) -> None:
    open_dashboard(page, voila(theme))
    train(page)
    expect(page.locator(".msda-explain-bars")).to_be_hidden()  # only a hint until a point is chosen
    click_a_red_point(page)
    expect(status(page)).to_contain_text("points to", timeout=_ms(STEP_S))
    bars = page.locator(".msda-explain-bars g.bargroup rect.bar")
    expect(bars).to_have_count(DEMO_SENSORS, timeout=_ms(STEP_S))
    expect(page.locator(".msda-explain-bars")).to_be_visible()
    widths = [float(bars.nth(i).get_attribute("width") or 0) for i in range(DEMO_SENSORS)]
    assert max(widths) > 0, widths  # drawn, not collapsed (figure laid out while visible)
    # the explanation names the point the status line names
    expect(page.locator(".msda-explain")).to_contain_text(selected_time(page))
    page.mouse.move(5, 5)  # no tooltip over the chart in the screenshot
    screenshot(page, artifacts, f"dashboard-{theme}-explained.png")


def test_moving_the_threshold_changes_the_anomaly_count(page: Page, voila) -> None:
    open_dashboard(page, voila("light"))
    train(page)
    before = anomaly_count(page)
    expect(page.locator(".msda-table-count")).to_contain_text(count_text(before))
    handle = page.locator(".msda-threshold-slider .noUi-handle")
    track = page.locator(".msda-threshold-slider .noUi-target").bounding_box()
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 0.25 * track["width"], y, steps=8)  # a lower quantile: more anomalies
    page.mouse.up()
    expect(status(page)).to_contain_text("Threshold", timeout=_ms(STEP_S))
    expect(page.locator(".msda-anomaly-count")).not_to_contain_text(count_text(before), timeout=_ms(STEP_S))
    after = anomaly_count(page)
    assert after > before
    expect(page.locator(".msda-table-count")).to_contain_text(count_text(after))
    expect(status(page)).to_contain_text(re.compile(rf"\b{after} anomalies"))


def test_uploading_a_csv_switches_the_app_to_it(page: Page, voila, tmp_path: Path) -> None:
    open_dashboard(page, voila("light"))
    csv = tmp_path / "my_sensors.csv"
    make_series(n=800, n_sensors=4, seed=1, spike_at=500).to_csv(csv)
    open_csv(page, csv)
    expect(status(page)).to_contain_text("Loaded my_sensors.csv: 800 rows × 4 sensors", timeout=_ms(STEP_S))
    expect(page.locator(".msda-data-info")).to_contain_text("my_sensors.csv")
    legend = page.locator(".msda-timeline .g_legend text.legendtext")
    expect(legend).to_have_count(4)
    assert legend.all_text_contents() == ["s0", "s1", "s2", "s3"]
    train(page)  # and it trains on the new data
    assert anomaly_count(page) > 0


def test_a_broken_csv_gives_a_plain_message_and_the_app_keeps_working(page: Page, voila, tmp_path: Path) -> None:
    open_dashboard(page, voila("light"))
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b'time,temperature\n2024-01-01 00:00,1.5\n2024-01-01 01:00,"2.5\n')
    open_csv(page, broken)
    expect(page.locator(".msda-status .msda-level-error")).to_be_visible(timeout=_ms(STEP_S))
    message = status(page).inner_text()
    assert "Could not read broken.csv" in message and "The current data is kept." in message
    assert "Traceback" not in message and 'File "' not in message
    expect(page.locator(".msda-data-info")).to_contain_text("plant sensors")
    train(page)  # still works, on the data it had
    assert anomaly_count(page) > 0


def test_keyboard_steps_between_anomalies(page: Page, voila) -> None:
    open_dashboard(page, voila("light"))
    train(page)
    nav = page.locator(".msda-keyboard .msda-keyboard-nav")
    nav.click()
    expect(nav).to_be_focused()

    def press(key: str, previous: str | None) -> str:
        # the widget drops key presses within 80 ms of the last one (its auto-repeat debounce),
        # so a person-paced test waits past that window before each key
        page.wait_for_timeout(200)
        nav.press(key)
        if previous is None:
            expect(status(page)).to_contain_text("points to", timeout=_ms(STEP_S))
        else:
            expect(status(page)).not_to_contain_text(previous, timeout=_ms(STEP_S))
        expect(status(page)).to_contain_text("points to", timeout=_ms(STEP_S))
        return selected_time(page)

    first = press("ArrowRight", None)        # nothing selected yet: the first anomaly in time
    second = press("ArrowRight", first)
    assert second > first                    # ISO timestamps order like times
    assert press("ArrowLeft", second) == first
    last = press("End", first)
    assert last > second
    assert press("Home", last) == first
    expect(page.locator(".msda-explain-bars g.bargroup rect.bar")).to_have_count(DEMO_SENSORS)


def test_export_downloads_the_anomalies_as_csv(page: Page, voila, artifacts: Path) -> None:
    open_dashboard(page, voila("light"))
    train(page)
    n = anomaly_count(page)
    button = page.locator(".msda-export button")
    expect(button).to_be_enabled()
    with page.expect_download(timeout=_ms(STEP_S)) as info:
        button.click()
    download = info.value
    assert download.suggested_filename == "anomalies.csv"
    target = artifacts / "anomalies-export.csv"
    download.save_as(str(target))
    lines = target.read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#")]
    assert comments[0].startswith("# msda_widgets ") and any(c.startswith("# data: ") for c in comments)
    assert body[0] == "when,score,top_sensors"
    assert len(body) - 1 == n


# -------------------------------------------------------------------------- classroom mode (issue 7)

CLASSROOM_CODE = "owl-42"


@pytest.fixture(scope="module")
def classroom_voila(tmp_path_factory: pytest.TempPathFactory):
    """A second server, started as ``msda-widgets demo --classroom --teacher-code owl-42`` is."""
    import functools

    from msda_widgets import cli
    from tests.browser.conftest import ARTIFACTS, VoilaServer

    with pytest.MonkeyPatch.context() as mp:  # VoilaServer.start() builds its command with cli.voila_command
        mp.setattr(cli, "voila_command", functools.partial(cli.voila_command, classroom=True,
                                                           teacher_code=CLASSROOM_CODE))
        server = VoilaServer("light", ARTIFACTS / "voila-classroom.log",
                             tmp_path_factory.mktemp("voila-classroom")).start()
    try:
        yield server.url
    finally:
        server.stop()


#: Filled areas drawn on the timeline: only the label band (the true anomalies) is filled.
LABEL_BANDS_JS = """() => Array.from(document.querySelectorAll('.msda-timeline path.area'))
    .filter(p => (p.getAttribute('d') || '').length > 0 && p.checkVisibility({visibilityProperty: true}))
    .length"""


def label_bands(page: Page) -> int:
    return page.evaluate(LABEL_BANDS_JS)


def test_classroom_mode_hides_the_answers_until_the_teachers_code(page: Page, classroom_voila,
                                                                   artifacts: Path) -> None:
    open_dashboard(page, classroom_voila)
    metrics = page.locator(".msda-metrics")
    expect(metrics).to_contain_text("Classroom mode")
    assert label_bands(page) == 0
    train(page)
    expect(metrics).not_to_contain_text("precision")
    page.locator(".msda-reveal").click()                     # a student without the code
    expect(status(page)).to_contain_text("not the teacher's code", timeout=_ms(STEP_S))
    assert label_bands(page) == 0
    page.locator(".msda-teacher-code input").fill(CLASSROOM_CODE)
    page.locator(".msda-reveal").click()
    expect(status(page)).to_contain_text("Answers shown", timeout=_ms(STEP_S))
    expect(metrics).to_contain_text(re.compile(r"precision \d\.\d\d · recall \d\.\d\d · F1 \d\.\d\d"))
    page.wait_for_function(f"() => ({LABEL_BANDS_JS})() >= 1", timeout=_ms(STEP_S))
    expect(page.locator(".msda-teacher-code")).to_be_hidden()
    screenshot(page, artifacts, "classroom-answers-shown.png")


# ------------------------------------------------------------------------------ sensor profiling (issue 8)

def test_the_profile_tab_shows_every_sensor_and_applies_its_suggestion(page: Page, voila, artifacts: Path) -> None:
    open_dashboard(page, voila("light"))
    page.get_by_role("tab", name="Profile sensors").click()
    rows = page.locator(".msda-profile-table tbody tr")
    expect(rows).to_have_count(DEMO_SENSORS, timeout=_ms(STEP_S))
    cells = page.locator(".msda-profile-heatmap rect.heatmapcell")
    expect(cells).to_have_count(DEMO_SENSORS * DEMO_SENSORS, timeout=_ms(STEP_S))
    expect(page.locator(".msda-profile")).to_contain_text("166 windows of 30 rows")
    window = page.locator(".msda-profile input[type=number]").first
    window.fill("120")
    window.press("Enter")
    expect(page.locator(".msda-profile")).to_contain_text("41 windows of 120 rows", timeout=_ms(STEP_S))
    page.locator(".msda-profile-apply").click()
    expect(status(page)).to_contain_text(f"Using the {DEMO_SENSORS} suggested sensors", timeout=_ms(STEP_S))
    screenshot(page, artifacts, "profile-tab.png")
    page.get_by_role("tab", name="Detect").click()
    train(page)  # the detector trains on the applied selection
    assert anomaly_count(page) > 0
