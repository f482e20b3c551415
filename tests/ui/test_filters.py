"""Every filter of the viewer, set through the form: the URL says the API's query, and the table shows what the
API answers for it (compared row by row), for each filter, each time preset and a custom range."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Page, expect

from core.event import format_ms, now_ms
from tests.helpers import ThreadedCollector, request
from tests.ui.conftest import Viewer
from tests.ui.data import event, ingest

PRESETS_MS = {"15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000}


@pytest.fixture
def recent(ui_collector: ThreadedCollector) -> tuple[ThreadedCollector, str]:
    """40 events over the last 10 minutes, and one each 30 min, 3 h, 2 d and 10 d ago."""
    now = now_ms()
    events = [event(n, now - 600_000 + n * 15_000) for n in range(40)]
    events += [event(40 + i, now - ago) for i, ago in enumerate((1_800_000, 10_800_000, 2 * 86_400_000, 864_000_000))]
    ingest(ui_collector, ui_collector.key("acme", "ingest"), events)
    return ui_collector, ui_collector.key("acme", "read")


def shown_times(viewer: Viewer) -> list[str]:
    return viewer.cells(0)


def api_times(collector: ThreadedCollector, key: str, page_url: str) -> list[str]:
    """The times of the events the API lists for the view in ``page_url`` (presets resolved now), newest first."""
    params = dict(parse_qsl(urlsplit(page_url).query))
    preset = params.pop("range", "24h")
    params.pop("group", None)
    if preset in PRESETS_MS and "from" not in params:
        params["from"] = format_ms(now_ms() - PRESETS_MS[preset])
    listed = request("GET", f"{collector.url}/v1/audit-log", key=key, params={**params, "limit": 200}).json()
    assert listed["has_more"] is False
    return [item["created_at"].replace("T", " ").removesuffix("Z") for item in listed["data"]]


def view_matches_api(viewer: Viewer, collector: ThreadedCollector, key: str) -> list[str]:
    """Wait for the view to load, then check its rows against the API's answer for its URL."""
    expected = api_times(collector, key, viewer.page.url)
    status = f"All {len(expected):,} events." if expected else "No events match this view."
    expect(viewer.page.locator("#status")).to_have_text(status)
    shown = shown_times(viewer)
    assert shown == expected[: len(shown)] and (len(shown) == len(expected) or len(shown) >= 12)
    return expected


def fill(page: Page, label: str, value: str) -> None:
    page.get_by_role("button", name="Clear").click()
    page.get_by_label(label, exact=True).fill(value)
    page.get_by_label(label, exact=True).press("Enter")


def choose(page: Page, label: str, value: str) -> None:
    page.get_by_role("button", name="Clear").click()
    page.get_by_label(label, exact=True).select_option(value)  # a menu applies at once


CASES: list[tuple[str, Callable[[Page], None], dict[str, str], int]] = [
    ("free-text", lambda page: fill(page, "Search", "carol"), {"q": "carol"}, 8),
    ("action-wildcard", lambda page: fill(page, "Action", "http.p*"), {"action": "~eq:http.p*"}, 21),
    ("actor", lambda page: fill(page, "Actor", "dave"), {"actor_id": "dave"}, 8),
    ("resource-type", lambda page: fill(page, "Resource type", "invoice"), {"resource_type": "invoice"}, 10),
    ("resource-id", lambda page: fill(page, "Resource id", "INV-7"), {"resource_id": "INV-7"}, 10),
    ("outcome", lambda page: choose(page, "Outcome", "failure"), {"outcome": "failure"}, 15),
    ("method", lambda page: choose(page, "Method", "DELETE"), {"method": "DELETE"}, 5),
    ("status-class", lambda page: choose(page, "Status", "4xx"), {"status_code": "4xx"}, 10),
    ("client-cidr", lambda page: fill(page, "Client IP / CIDR", "10.0.0.0/8"), {"client_ip": "10.0.0.0/8"}, 10),
    ("path-wildcard", lambda page: fill(page, "Path", "/api/v1/orders/*"), {"path": "~eq:/api/v1/orders/*"}, 11),
    ("metadata", lambda page: fill(page, "Metadata", "region=eu"), {"metadata.region": "eu"}, 21),
]


def test_each_filter_is_in_the_url_and_shows_what_the_api_answers(
    recent: tuple[ThreadedCollector, str], viewers: Any
) -> None:
    collector, key = recent
    viewer = viewers(collector, key=key)
    page = viewer.page
    viewer.open()
    viewer.wait_loaded()
    assert len(view_matches_api(viewer, collector, key)) == 42  # the default view: the last 24 h
    for name, act, params, count in CASES:
        act(page)
        page.wait_for_url(lambda url, want=params: dict(parse_qsl(urlsplit(url).query)) == want)
        assert len(view_matches_api(viewer, collector, key)) == count, name
        viewer.shot(name)

    page.get_by_role("button", name="Clear").click()
    page.get_by_text("More filters").click()
    page.get_by_label("Request id").fill("req-7")
    page.get_by_label("Request id").press("Enter")
    page.wait_for_url(lambda url: "request_id=req-7" in url)
    assert len(view_matches_api(viewer, collector, key)) == 1

    # Two filters at once, then back through the browser's history: the URL is the view.
    fill(page, "Actor", "alice")
    page.get_by_label("Outcome", exact=True).select_option("failure")
    page.wait_for_url(lambda url: "actor_id=alice" in url and "outcome=failure" in url)
    both = view_matches_api(viewer, collector, key)
    assert len(both) == 3
    page.go_back()
    expect(page.get_by_label("Outcome", exact=True)).to_have_value("")
    expect(page.get_by_label("Actor", exact=True)).to_have_value("alice")
    view_matches_api(viewer, collector, key)


def test_time_presets_and_a_custom_range(recent: tuple[ThreadedCollector, str], viewers: Any) -> None:
    collector, key = recent
    viewer = viewers(collector, key=key)
    page = viewer.page
    viewer.open("?range=all")
    assert len(view_matches_api(viewer, collector, key)) == 44
    for preset, count in (("15m", 40), ("1h", 41), ("24h", 42), ("7d", 43)):
        page.get_by_label("Time range").select_option(preset)
        page.wait_for_url(lambda url, preset=preset: preset == "24h" or f"range={preset}" in url)
        assert len(view_matches_api(viewer, collector, key)) == count, preset
    viewer.shot("preset-7d")

    # Custom: the two older events only (inputs are in the viewer's time zone, UTC here).
    page.get_by_label("Time range").select_option("custom")
    now = time.time()
    page.get_by_label("From", exact=True).fill(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3 * 86_400)))
    page.get_by_label("To", exact=True).fill(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 7_200)))
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(lambda url: "from=" in url and "to=" in url and "range" not in url)
    assert len(view_matches_api(viewer, collector, key)) == 2
    viewer.shot("custom-range")

    page.reload()  # a bookmarked custom range shows the same
    assert len(view_matches_api(viewer, collector, key)) == 2
    expect(page.get_by_label("Time range")).to_have_value("custom")


def test_a_refused_filter_says_why_and_the_page_keeps_working(
    recent: tuple[ThreadedCollector, str], viewers: Any
) -> None:
    collector, key = recent
    viewer = viewers(collector, key=key)
    page = viewer.page
    viewer.open()
    viewer.wait_loaded()
    fill(page, "Client IP / CIDR", "10.0.0.0/99")
    expect(page.locator("#filter-error")).to_contain_text("client_ip: must be an IP address or a CIDR block")
    fill(page, "Metadata", "no equals sign")
    expect(page.locator("#filter-error")).to_contain_text("Metadata: write key=value")
    viewer.shot("refused")
    fill(page, "Actor", "bob")
    expect(page.locator("#filter-error")).to_be_hidden()
    assert len(view_matches_api(viewer, collector, key)) == 9
