"""Cursor paging as the table scrolls: every event exactly once, in order; only the rows in view are in the DOM,
also with 10,000 events loaded."""

from __future__ import annotations

import time
from typing import Any

from tests.helpers import ThreadedCollector, request
from tests.ui.conftest import Viewer, record
from tests.ui.data import ingest, series

# One scroll step in the page: wait for two animation frames (the table renders on the first one after a scroll),
# report the rendered rows, then scroll on by a screen.
STEP = """async (jump) => {
  const grid = document.getElementById('grid');
  if (jump !== null) grid.scrollTop = jump;
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  const rows = [...document.querySelectorAll('#rows [role=row]')]
    .map(row => [Number(row.getAttribute('aria-rowindex')), row.children[0].textContent]);
  const atEnd = grid.scrollTop + grid.clientHeight >= grid.scrollHeight - 1;
  const state = {rows, atEnd, top: grid.scrollTop, status: document.getElementById('status').textContent};
  if (jump === null) grid.scrollTop += grid.clientHeight - 40;
  return state;
}"""
MAX_RENDERED = 45  # the rows in view (about 13 here) and 8 above and below: never the whole list


def all_times(collector: ThreadedCollector, key: str) -> list[str]:
    """Every event's time as the table shows it (UTC), newest first, walked through the API's cursor."""
    times: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = request("GET", f"{collector.url}/v1/audit-log", key=key, params=params).json()
        times += [item["created_at"].replace("T", " ").removesuffix("Z") for item in page["data"]]
        if not page["has_more"]:
            return times
        cursor = page["next_cursor"]


def scroll_to_the_end(viewer: Viewer, total: int, jump: bool = False) -> dict[int, str]:
    """Scroll down a screen at a time (or straight to the bottom) until every event is loaded and the last row
    is in view; returns each rendered row's time by its aria-rowindex."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 120
    while True:
        state = viewer.page.evaluate(STEP, 10**9 if jump else None)
        assert len(state["rows"]) <= MAX_RENDERED, f"{len(state['rows'])} rows in the DOM"
        for index, shown in state["rows"]:
            assert seen.setdefault(index, shown) == shown, f"row {index} changed"
        if state["atEnd"] and state["status"] == f"All {total:,} events.":
            return seen
        assert time.monotonic() < deadline, f"still scrolling after 120 s: {state['status']}"


def test_scrolling_pages_through_1200_events_each_exactly_once(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(1200))
    key = ui_collector.key("acme", "read")
    expected = all_times(ui_collector, key)
    assert len(expected) == 1200 and len(set(expected)) == 1200
    viewer = viewers(ui_collector, key=key)
    viewer.open("?range=all")
    viewer.wait_loaded()
    viewer.shot("first-page")
    seen = scroll_to_the_end(viewer, 1200)
    viewer.shot("last-page")
    assert sorted(seen) == list(range(2, 1202))  # the header is row 1
    assert [seen[index] for index in range(2, 1202)] == expected  # no duplicate, none missing, in order
    assert viewer.page.locator("#grid").get_attribute("aria-rowcount") == "1201"


def test_ten_thousand_rows_scroll_with_only_the_visible_ones_rendered(
    ui_collector: ThreadedCollector, viewers: Any
) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(10_000, step_ms=250))
    key = ui_collector.key("acme", "read")
    expected = all_times(ui_collector, key)
    viewer = viewers(ui_collector, key=key)
    viewer.open("?range=all")
    viewer.wait_loaded()
    scroll_to_the_end(viewer, 10_000, jump=True)  # every page loaded: 10,000 rows in the table
    viewer.page.evaluate(  # main-thread tasks over 50 ms from here on: what a user feels as jank
        "window.__longTasks = []; new PerformanceObserver(list => window.__longTasks.push("
        "...list.getEntries().map(task => task.duration))).observe({type: 'longtask'})"
    )
    rendered = []
    for fraction in (0.9, 0.1, 0.5, 0.75, 0.25, 0.0, 0.6, 0.33, 1.0, 0.05):
        top = int(fraction * 10_000 * 32)
        state = viewer.page.evaluate(STEP, top)
        rows = dict(state["rows"])
        rendered.append(len(rows))
        assert len(rows) <= MAX_RENDERED
        first_visible = 2 + int(state["top"] // 32)
        assert first_visible in rows or first_visible - 1 in rows
        for index, shown in rows.items():
            assert shown == expected[index - 2]
    viewer.shot("deep-scroll")
    long_tasks = viewer.page.evaluate("window.__longTasks")
    record(
        "10,000 rows loaded, 10 jumps through them",
        f"at most {max(rendered)} rows in the DOM; {len(long_tasks)} main-thread tasks over 50 ms"
        + (f" (longest {max(long_tasks):.0f} ms)" if long_tasks else ""),
    )
