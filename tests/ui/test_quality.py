"""Accessibility (axe-core: no serious or critical violation), a 360 px wide screen, first paint with 50 rows
(measured and reported, not asserted) and the bytes a page load transfers (under 200 KB uncompressed); the
README's screenshot is taken here."""

from __future__ import annotations

import statistics
from typing import Any
from urllib.parse import urlsplit

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, Response, expect

from tests.helpers import ThreadedCollector
from tests.ui.conftest import ARTIFACTS, record
from tests.ui.data import BASE_MS, event, ingest, series
from tests.ui.test_serving import ASSET_BUDGET_BYTES

AXE = Axe()


def assert_accessible(page: Page, where: str) -> None:
    results = AXE.run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{where}:\n{results.generate_report()}"


def demo_data(collector: ThreadedCollector) -> None:
    """Five hours of traffic, one event a minute, with a burst of failures from one address."""
    events = series(300, step_ms=60_000)
    events += [
        event(4, BASE_MS + 7_200_000 + n * 5_000, actor_id="mallory", client_ip="192.0.2.66", action="user.login",
              metadata={"reason": "bad password"}, request_id=f"burst-{n}")
        for n in range(24)
    ]  # fmt: skip
    ingest(collector, collector.key("acme", "ingest"), events)


def test_no_serious_accessibility_violations_and_the_readme_screenshot(
    ui_collector: ThreadedCollector, viewers: Any
) -> None:
    demo_data(ui_collector)
    key = ui_collector.key("acme", "read")
    signed_out = viewers(ui_collector)
    signed_out.open()
    expect(signed_out.page.get_by_label("Read key")).to_be_visible()
    assert_accessible(signed_out.page, "sign-in")

    viewer = viewers(ui_collector, key=key, viewport={"width": 1280, "height": 940})
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    expect(page.locator(".legend li")).to_have_count(2)
    page.screenshot(path=ARTIFACTS / "readme-viewer.png")  # docs/viewer.png in the README is a copy of it
    page.locator("#grid").focus()
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert_accessible(page, "the table")
    viewer.shot("overview")

    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert_accessible(page, "the event detail")
    viewer.shot("detail")


def test_usable_at_360_px(ui_collector: ThreadedCollector, viewers: Any) -> None:
    demo_data(ui_collector)
    viewer = viewers(
        ui_collector, key=ui_collector.key("acme", "read"), viewport={"width": 360, "height": 740}, is_mobile=True,
        has_touch=True,
    )  # fmt: skip
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the screen
    first_row = page.locator("#rows [role=row][aria-rowindex='2']")
    first_row.scroll_into_view_if_needed()
    expect(first_row).to_be_visible()
    box = first_row.bounding_box()
    assert box is not None and box["width"] <= 360
    visible_cells = first_row.locator("[role=gridcell]:visible")
    expect(visible_cells).to_have_count(6)  # time, actor, action, resource, outcome, status (IP and request hidden)
    viewer.shot("table")
    assert_accessible(page, "the table at 360 px")

    actor = page.get_by_label("Actor", exact=True)
    expect(actor).to_be_hidden()  # the filter panel starts folded on a phone: the results come first
    page.get_by_text("Filters", exact=True).tap()
    actor.fill("mallory")
    actor.press("Enter")
    expect(page.locator("#status")).to_have_text("All 24 events.")
    expect(page.locator("#filter-summary")).to_have_text("Filters (1 active)")
    first_row.tap()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog_box = dialog.bounding_box()
    assert dialog_box is not None and dialog_box["width"] <= 360
    viewer.shot("detail")
    assert_accessible(page, "the event detail at 360 px")
    dialog.get_by_role("button", name="Close the event detail").tap()
    expect(dialog).to_be_hidden()


def test_first_paint_with_50_rows_and_the_bytes_a_load_transfers(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(50))
    key = ui_collector.key("acme", "read")
    runs = []
    for _ in range(3):  # each a cold load: a new browser context, nothing cached
        viewer = viewers(ui_collector, key=key)
        responses: list[Response] = []
        viewer.page.on("response", lambda response, into=responses: into.append(response))
        viewer.open("?range=all")
        expect(viewer.page.locator("#status")).to_have_text("All 50 events.")
        viewer.page.wait_for_function("performance.getEntriesByName('sidetrail:first-rows').length > 0")
        timing = viewer.page.evaluate(
            """() => ({rows: performance.getEntriesByName('sidetrail:first-rows')[0].startTime,
                       fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null})"""
        )
        assets = [response for response in responses if urlsplit(response.url).path.startswith("/ui/")]
        sizes = {urlsplit(response.url).path: len(response.body()) for response in assets}
        runs.append((timing, sizes))
    timing, sizes = runs[-1]
    total = sum(sizes.values())
    assert total < ASSET_BUDGET_BYTES, sizes
    assert "/ui/js/main.js" in sizes and "/ui/viewer.css" in sizes
    rows = [run[0]["rows"] for run in runs]
    fcp = [run[0]["fcp"] for run in runs if run[0]["fcp"] is not None]
    record(
        "first paint of /ui/ with 50 rows (3 cold loads)",
        f"median {statistics.median(rows):.0f} ms, max {max(rows):.0f} ms after navigation start"
        + (f"; first contentful paint median {statistics.median(fcp):.0f} ms" if fcp else ""),
    )
    record("assets transferred by one load of /ui/", f"{total / 1024:.1f} KB uncompressed in {len(sizes)} files")
