"""The leaderboard page in a real headless Chromium: it renders, a header click sorts, the
filter hides rows, the hostile model name is text, and a screenshot is kept.

Needs Debian's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it when it can)
or ``$VLBENCH_CHROMIUM``; skipped with the reason otherwise. Driven over the DevTools pipe
(tests/cdp.py, stdlib only). Screenshots go to ``$VLBENCH_SCREENSHOTS`` or
``.cache/screenshots/`` in the repository and their paths are printed (pytest -s / -rP).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cdp import Browser, BrowserError, find_chromium
from tests.lb_fixtures import HOSTILE, fixture_site  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
SYN = 'section.group[data-task="retrieval"][data-dataset="synthetic"]'


def screenshot_dir() -> Path:
    return Path(os.environ.get("VLBENCH_SCREENSHOTS") or ROOT / ".cache" / "screenshots")


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.skip("chromium not found (apt-get install chromium, or set VLBENCH_CHROMIUM); "
                    "the browser test needs a headless Chromium")
    try:
        b = Browser(exe)
    except (BrowserError, OSError) as exc:
        pytest.skip(f"chromium at {exe} could not be started headless: {exc}")
    with b:
        yield b


@pytest.fixture(scope="module")
def page_url(fixture_site) -> str:  # noqa: F811 - the imported session fixture
    return Path(fixture_site["out"]).resolve().as_uri()


def column_values(browser: Browser, header: str, numeric: bool = True) -> list:
    return browser.eval(f"""(function () {{
        var t = document.querySelector({SYN!r} + " table");
        var i = Array.prototype.map.call(t.tHead.rows[0].cells, function (c) {{ return c.textContent; }})
                  .indexOf({header!r});
        return Array.prototype.map.call(t.tBodies[0].rows, function (r) {{
            var c = r.cells[i];
            return {'parseFloat(c.getAttribute("data-sort"))' if numeric else 'c.textContent'};
        }});
    }})()""")


def click_header(browser: Browser, header: str) -> None:
    n = browser.eval(f"""Array.prototype.map.call(document.querySelectorAll({SYN!r} + " thead th"),
        function (c) {{ return c.textContent; }}).indexOf({header!r}) + 1""")
    assert n > 0, header
    browser.click_selector(f"{SYN} thead th:nth-child({n})")


def test_page_renders_sorts_on_click_filters_and_screenshots(browser, page_url):
    browser.open(page_url)
    assert browser.eval("document.title") == "vlbench leaderboard"
    assert browser.eval("document.querySelectorAll('section.group').length") == 3
    assert browser.eval("document.querySelectorAll('figure img').length") >= 8
    assert browser.eval("Array.prototype.every.call(document.images, function (i) "
                        "{ return i.complete && i.naturalWidth > 100; })")  # every plot decoded
    # The hostile name is text in the DOM, and it never ran (no alert hook, no injected nodes).
    names = column_values(browser, "model", numeric=False)
    assert HOSTILE in names and browser.eval("document.scripts.length") == 1

    before = column_values(browser, "img/s")
    click_header(browser, "img/s")   # first click: descending
    desc = column_values(browser, "img/s")
    assert desc == sorted(before, reverse=True) and desc != before
    click_header(browser, "img/s")   # second click: ascending
    assert column_values(browser, "img/s") == sorted(before)
    click_header(browser, "model")   # text: descending by the browser's collation
    by_name = column_values(browser, "model", numeric=False)
    assert sorted(by_name) == sorted(names) and by_name[0] == "tiny-clip-synth" and by_name[-1] == HOSTILE

    shots = screenshot_dir()
    path = browser.screenshot(shots / "leaderboard.png")
    assert path.stat().st_size > 20_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {path}")

    # Filter by model family: only the blip rows stay, sections without one disappear.
    browser.eval("var s = document.getElementById('filter-family'); s.value = 'blip';"
                 "s.dispatchEvent(new Event('change'))")
    visible = browser.eval(f"""Array.prototype.filter.call(document.querySelectorAll({SYN!r} + " tbody tr"),
        function (r) {{ return r.offsetParent !== null; }}).map(function (r) {{ return r.cells[0].textContent; }})""")
    assert sorted(visible) == ["blip (ITC only)", "blip (ITC\u2192ITM k=128)"]
    assert browser.eval("Array.prototype.filter.call(document.querySelectorAll('section.group'), "
                        "function (s) { return s.offsetParent !== null; }).length") == 1
    filtered = browser.screenshot(shots / "leaderboard-filtered.png")
    print(f"screenshot (filtered to blip): {filtered}")
