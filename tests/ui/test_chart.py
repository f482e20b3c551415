"""The histogram: counts from the stats route, grouped by outcome or action; dragging across it narrows the view."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import expect

from tests.helpers import ThreadedCollector
from tests.ui.data import ingest, series
from tests.ui.test_filters import view_matches_api


def test_dragging_across_the_chart_narrows_the_time_range(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(120, step_ms=60_000))  # two hours, one a minute
    key = ui_collector.key("acme", "read")
    viewer = viewers(ui_collector, key=key)
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    chart = page.get_by_role("img", name="120 events from 05:00 to 07:00, in buckets of 2m")
    expect(chart).to_be_visible()
    expect(page.locator(".legend li")).to_have_text(["success 75", "failure 45"])
    viewer.shot("chart")

    box = chart.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
    viewer.shot("dragging")
    page.mouse.up()

    page.wait_for_url(lambda url: "from=" in url and "to=" in url)
    params = dict(parse_qsl(urlsplit(page.url).query))
    start, end = (datetime.fromisoformat(params[name]) for name in ("from", "to"))
    assert datetime.fromisoformat("2026-11-22T05:26:00Z") <= start <= datetime.fromisoformat("2026-11-22T05:32:00Z")
    assert datetime.fromisoformat("2026-11-22T05:58:00Z") <= end <= datetime.fromisoformat("2026-11-22T06:04:00Z")
    assert start.minute % 2 == 0 and end.minute % 2 == 0 and start.second == end.second == 0  # whole 2m buckets
    expect(page.get_by_label("Time range")).to_have_value("custom")
    shown = view_matches_api(viewer, ui_collector, key)
    assert len(shown) == (end - start).total_seconds() // 60
    assert all(f"{start:%Y-%m-%d %H:%M:%S}" <= time < f"{end:%Y-%m-%d %H:%M:%S}" for time in shown)
    expect(page.get_by_role("img", name=f"{len(shown)} events from", exact=False)).to_be_visible()
    viewer.shot("narrowed")

    page.get_by_label("Group by").select_option("action")
    expect(page.locator(".legend li").first).to_have_text(re.compile(r"^http\.\w+ \d+$"))
    page.wait_for_url(lambda url: "group=action" in url)
    page.reload()
    expect(page.get_by_label("Group by")).to_have_value("action")
    expect(page.locator(".legend li")).to_have_count(6)  # the six actions of those minutes, each its colour
    viewer.shot("by-action")
