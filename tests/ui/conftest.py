"""The viewer's browser tests: Playwright for Python driving Debian's Chromium (``/usr/bin/chromium``, installed by
``scripts/install-system``; ``playwright install`` cannot download browsers here) against a real collector.

Without Chromium or Playwright these tests skip with the reason, except under ``CI=true``, where that is a
failure. Each step's screenshot is saved under ``test-artifacts/ui/`` (``$SIDETRAIL_TEST_ARTIFACTS`` moves it);
measurements (first paint, asset sizes) are printed at the end of the run and saved there as JSON.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, ThreadedCollector

CHROMIUM = Path(os.environ.get("SIDETRAIL_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("SIDETRAIL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"
KEY_STORAGE = "sidetrail.readKey"  # the sessionStorage entry the viewer keeps its key in (static/js/api.js)
TIMEOUT_MS = 30_000  # Playwright's waits: conditions, bounded generously for a loaded 2-core machine
MEASUREMENTS: dict[str, Any] = {}

try:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright
except ImportError as missing:  # pragma: no cover - the test extras install it
    PLAYWRIGHT_MISSING: str | None = f"playwright is not installed ({missing}); scripts/install installs it"
else:
    PLAYWRIGHT_MISSING = None
    expect.set_options(timeout=TIMEOUT_MS)


def _unavailable() -> str | None:
    if PLAYWRIGHT_MISSING:
        return PLAYWRIGHT_MISSING
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing: scripts/install-system installs Debian's chromium (needs root and apt-get)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one test module (closed after it)."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def ui_collector(tmp_path: Path) -> Iterator[ThreadedCollector]:
    """A real collector on SQLite whose long-polls last at most 2 s (so a live tail left waiting ends quickly
    when the test stops)."""
    server = ThreadedCollector(tmp_path, limits={"max_wait": "2s"})
    try:
        yield server
    finally:
        server.close()


@dataclass
class Viewer:
    """One browser tab on the viewer, recording what a hostile page would show: uncaught errors, console
    errors, CSP violations and every URL requested."""

    page: Page
    context: BrowserContext
    base: str
    name: str
    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    shots: int = 0

    def open(self, query: str = "") -> None:
        self.page.goto(f"{self.base}/ui/{query}")

    def sign_in(self, key: str) -> None:
        self.page.get_by_label("Read key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def rows(self) -> Any:
        return self.page.locator("#rows [role=row]")

    def cells(self, column: int) -> list[str]:
        """The text of one column (0 = time) of the rendered rows, top to bottom."""
        return self.page.evaluate(
            """column => [...document.querySelectorAll('#rows [role=row]')]
                .sort((a, b) => a.getAttribute('aria-rowindex') - b.getAttribute('aria-rowindex'))
                .map(row => row.children[column].textContent)""",
            column,
        )

    def wait_loaded(self) -> None:
        """Until the view's rows and chart are in: neither is busy (aria-busy, set while a request is out)."""
        expect(self.page.locator("#grid")).to_have_attribute("aria-busy", "false")
        expect(self.page.locator("#histogram")).to_have_attribute("aria-busy", "false")
        expect(self.page.locator("#status")).to_have_text(re.compile(r"events|No events match"))

    def violations(self) -> list[str]:
        return self.page.evaluate("window.__cspViolations")

    def shot(self, step: str) -> Path:
        """Save a screenshot of this step as a test artifact."""
        self.shots += 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{self.shots:02d}-{step}.png"
        self.page.screenshot(path=path)
        return path


def open_viewer(
    browser: Browser,
    collector: ThreadedCollector,
    name: str,
    key: str | None = None,
    **context_options: Any,
) -> Viewer:
    """A new browser context on ``collector``'s viewer (UTC unless told; signed in already when ``key``)."""
    options = {"viewport": {"width": 1280, "height": 860}, "timezone_id": "UTC", "locale": "en-US", **context_options}
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    # Recorded from the first script on: a payload that ran, or was blocked by the CSP, leaves a trace here.
    context.add_init_script("window.__cspViolations = []; document.addEventListener('securitypolicyviolation', "
                            "e => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));")  # fmt: skip
    if key is not None:
        context.add_init_script(f"sessionStorage.setItem({json.dumps(KEY_STORAGE)}, {json.dumps(key)})")
    page = context.new_page()
    viewer = Viewer(page, context, collector.url, re.sub(r"\W+", "-", name).strip("-"))
    page.on("pageerror", lambda error: viewer.errors.append(str(error)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            viewer.console_errors.append(message.text)

    page.on("console", console)
    page.on("request", lambda request: viewer.requested.append(request.url))
    return viewer


@pytest.fixture
def viewers(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``viewers(collector, key=None, **context_options)`` opens a tab; every tab is closed after the test,
    and none may have had an uncaught error."""
    opened: list[Viewer] = []

    def make(collector: ThreadedCollector, key: str | None = None, **options: Any) -> Viewer:
        viewer = open_viewer(browser, collector, f"{request.node.name}-{len(opened)}", key, **options)
        opened.append(viewer)
        return viewer

    try:
        yield make
    finally:
        for viewer in opened:
            viewer.context.close()
    for viewer in opened:
        assert viewer.errors == [], f"uncaught errors in the page: {viewer.errors}"


def record(name: str, value: Any) -> None:
    """A measurement to report at the end of the run (and keep in test-artifacts/ui/measurements.json)."""
    MEASUREMENTS[name] = value
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "measurements.json").write_text(json.dumps(MEASUREMENTS, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("web viewer measurements (reported, not asserted)")
        for name, value in MEASUREMENTS.items():
            terminalreporter.write_line(f"{name}: {value}")
