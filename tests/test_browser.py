"""The leaderboard page in a real headless Chromium: it renders, a header click sorts, the
filter hides rows, the hostile model name is text, and a screenshot is kept.

Driven by Playwright (``pip install '.[test]'``) over the system Chromium: Debian's
``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it when it can) or
``$VLBENCH_CHROMIUM``, passed as ``executable_path`` -- ``playwright install`` (a browser
download) is never needed. Skipped with the reason when Playwright or a Chromium is missing.
Screenshots go to ``$VLBENCH_SCREENSHOTS`` or ``.cache/screenshots/`` in the repository and
their paths are printed (pytest -s / -rP).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.lb_fixtures import HOSTILE, fixture_site  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
SYN = 'section.group[data-task="retrieval"][data-dataset="synthetic"]'
# Headless on a CI box: no sandbox (root in a container), no GPU, and nothing that phones home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--hide-scrollbars", "--mute-audio"]


def find_chromium() -> str | None:
    """``$VLBENCH_CHROMIUM``, else Debian's chromium (or a chromium/chrome on PATH)."""
    env = os.environ.get("VLBENCH_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def screenshot_dir() -> Path:
    return Path(os.environ.get("VLBENCH_SCREENSHOTS") or ROOT / ".cache" / "screenshots")


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install '.[test]')")
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium not found (apt-get install chromium, or set VLBENCH_CHROMIUM); "
                    "the browser test needs a headless Chromium")
    profile = tempfile.mkdtemp(prefix="vlbench-chromium-")
    with sync_api.sync_playwright() as pw:
        try:  # a persistent context: its own fresh profile folder, like --user-data-dir
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 900}, timeout=60_000)
        except sync_api.Error as exc:
            shutil.rmtree(profile, ignore_errors=True)
            pytest.skip(f"chromium at {exe} could not be started headless: {str(exc).splitlines()[0]}")
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page_url(fixture_site) -> str:  # noqa: F811 - the imported session fixture
    return Path(fixture_site["out"]).resolve().as_uri()


def column_values(page, header: str, numeric: bool = True) -> list:
    return page.evaluate("""([sel, header, numeric]) => {
        const t = document.querySelector(sel + " table");
        const i = Array.from(t.tHead.rows[0].cells, c => c.textContent).indexOf(header);
        return Array.from(t.tBodies[0].rows, r => numeric ? parseFloat(r.cells[i].getAttribute("data-sort"))
                                                          : r.cells[i].textContent);
    }""", [SYN, header, numeric])


def click_header(page, header: str) -> None:
    """A real mouse click on the header cell (Playwright scrolls it into view and waits for it)."""
    n = page.evaluate("""([sel, header]) => Array.from(document.querySelectorAll(sel + " thead th"),
                         c => c.textContent).indexOf(header)""", [SYN, header])
    assert n >= 0, header
    page.locator(f"{SYN} thead th").nth(n).click()


def screenshot(page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def test_page_renders_sorts_on_click_filters_and_screenshots(page, page_url):
    page.goto(page_url, wait_until="load")
    assert page.title() == "vlbench leaderboard"
    assert page.locator("section.group").count() == 3
    assert page.locator("figure img").count() >= 8
    assert page.evaluate("Array.prototype.every.call(document.images, "
                         "i => i.complete && i.naturalWidth > 100)")  # every plot decoded
    # The hostile name is text in the DOM, and it never ran (no alert hook, no injected nodes).
    names = column_values(page, "model", numeric=False)
    assert HOSTILE in names and page.evaluate("document.scripts.length") == 1

    before = column_values(page, "img/s")
    click_header(page, "img/s")   # first click: descending
    desc = column_values(page, "img/s")
    assert desc == sorted(before, reverse=True) and desc != before
    click_header(page, "img/s")   # second click: ascending
    assert column_values(page, "img/s") == sorted(before)
    click_header(page, "model")   # text: descending by the browser's collation
    by_name = column_values(page, "model", numeric=False)
    assert sorted(by_name) == sorted(names) and by_name[0] == "tiny-clip-synth" and by_name[-1] == HOSTILE

    shots = screenshot_dir()
    path = screenshot(page, shots / "leaderboard.png")
    assert path.stat().st_size > 20_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {path}")

    # Filter by model family: only the blip rows stay, sections without one disappear.
    page.select_option("#filter-family", "blip")  # fires input + change, as a user's pick does
    rows = page.locator(f"{SYN} tbody tr")
    visible = [rows.nth(i).locator("td").first.text_content() for i in range(rows.count()) if rows.nth(i).is_visible()]
    assert sorted(visible) == ["blip (ITC only)", "blip (ITC\u2192ITM k=128)"]
    groups = page.locator("section.group")
    assert sum(groups.nth(i).is_visible() for i in range(groups.count())) == 1
    filtered = screenshot(page, shots / "leaderboard-filtered.png")
    print(f"screenshot (filtered to blip): {filtered}")
