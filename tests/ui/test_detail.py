"""The event detail and the keyboard: / focuses search, j/k move through rows, Enter opens the detail, Esc closes
it; the detail shows every field, copies, links to related events and can be shared by URL."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.helpers import ThreadedCollector, request
from tests.ui.data import ingest, series


def newest(collector: ThreadedCollector, key: str, count: int) -> list[dict[str, Any]]:
    return request("GET", f"{collector.url}/v1/audit-log", key=key, params={"limit": count}).json()["data"]


def test_keyboard_moves_opens_and_closes_and_the_detail_shows_every_field(
    ui_collector: ThreadedCollector, viewers: Any
) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(60))
    key = ui_collector.key("acme", "read")
    events = newest(ui_collector, key, 60)
    viewer = viewers(ui_collector, key=key, permissions=["clipboard-read", "clipboard-write"])
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    grid = page.locator("#grid")

    page.locator("body").press("/")
    expect(page.get_by_label("Search")).to_be_focused()
    expect(page.get_by_label("Search")).to_have_value("")  # the slash was not typed
    page.keyboard.press("j")  # typing in a field: not a shortcut
    expect(page.get_by_label("Search")).to_have_value("j")
    page.get_by_label("Search").fill("")

    grid.focus()
    for key_name in ("j", "j", "j", "k"):
        page.keyboard.press(key_name)
    active = page.locator("#rows [role=row][aria-selected=true]")
    expect(active).to_have_attribute("aria-rowindex", "3")  # the second newest
    expect(grid).to_have_attribute("aria-activedescendant", active.get_attribute("id") or "")
    viewer.shot("row-selected")

    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading", level=2)).to_have_text(f"Event: {events[1]['action']}")
    page.wait_for_url(lambda url: f"event={events[1]['id']}" in url)
    shown = dict(
        zip(
            dialog.locator(".event-fields dt").all_text_contents(),
            dialog.locator(".event-fields dd").all(),
            strict=True,
        )
    )
    scalars = {name: value for name, value in events[1].items() if not isinstance(value, dict)}
    assert set(shown) == set(scalars)  # every field of the event
    for name, value in scalars.items():
        text = shown[name].locator(".value").text_content() if value not in (None, "") else None
        assert text == (None if value in (None, "") else str(value)), name
    assert (
        json.loads(dialog.get_by_role("region", name="metadata").locator("pre").text_content() or "")
        == (events[1]["metadata"])
    )
    # Its place in the tenant's hash chain, as the integrity route gives it.
    link = request("GET", f"{ui_collector.url}/v1/audit-log/{events[1]['id']}/integrity", key=key).json()["data"]
    integrity = dialog.get_by_role("region", name="Integrity position")
    expect(integrity.locator("dd .value").first).to_have_text(str(link["position"]))
    expect(integrity.locator("dd .value").nth(1)).to_have_text(link["hash"])
    viewer.shot("detail")

    dialog.get_by_role("button", name="Copy id").click()
    expect(page.locator("#status")).to_have_text("Copied id.")
    assert page.evaluate("navigator.clipboard.readText()") == events[1]["id"]
    dialog.get_by_role("button", name="Copy JSON").click()
    expect(page.locator("#status")).to_have_text("Copied JSON.")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == events[1]

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(grid).to_be_focused()
    page.wait_for_url(lambda url: "event=" not in url)

    for _ in range(25):  # past the bottom of the view: the active row is scrolled into it
        page.keyboard.press("j")
    active = page.locator("#rows [role=row][aria-selected=true]")
    expect(active).to_have_attribute("aria-rowindex", "28")
    row_box, grid_box = active.bounding_box(), grid.bounding_box()
    assert row_box and grid_box and grid_box["y"] <= row_box["y"] <= grid_box["y"] + grid_box["height"] - 30
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("heading", level=2)).to_have_text(f"Event: {events[26]['action']}")
    viewer.shot("detail-further-down")


def test_related_links_and_a_shared_event_link(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(40))
    key = ui_collector.key("acme", "read")
    target = newest(ui_collector, key, 1)[0]
    viewer = viewers(ui_collector, key=key)
    page = viewer.page
    viewer.open(f"?range=all&event={target['id']}")  # a link to one event opens its detail
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".fields dd").first).to_have_text(target["id"])

    related = [
        ("Events by this actor", {"actor_id": target["actor_id"]}),
        ("Events on this resource", {"resource_type": target["resource_type"], "resource_id": target["resource_id"]}),
        ("Events from this IP", {"client_ip": target["client_ip"]}),
    ]
    for name, fields in related:
        if not dialog.is_visible():
            page.locator("#rows [role=row][aria-rowindex='2']").click()
        dialog.get_by_role("link", name=name).click()
        expect(dialog).to_be_hidden()
        page.wait_for_url(lambda url, fields=fields: all(field in url for field in fields) and "range=all" in url)
        expected = request("GET", f"{ui_collector.url}/v1/audit-log", key=key, params=fields).json()["data"]
        expect(page.locator("#status")).to_have_text(f"All {len(expected)} events.")
        assert viewer.cells(2) == [event["action"] for event in expected][: len(viewer.cells(2))]
        viewer.shot(name.lower().replace(" ", "-"))


def test_times_are_in_the_viewers_time_zone_with_utc_on_hover(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(2))  # 05:00:00Z and 05:00:01Z
    viewer = viewers(ui_collector, key=ui_collector.key("acme", "read"), timezone_id="Asia/Tokyo")  # UTC+9
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    expect(page.get_by_role("columnheader").first).to_have_text("Time (Asia/Tokyo)")
    assert viewer.cells(0) == ["2026-11-22 14:00:01.000", "2026-11-22 14:00:00.000"]
    cell = page.locator("#rows [role=row][aria-rowindex='2'] [role=gridcell]").first
    expect(cell).to_have_attribute("title", "2026-11-22T05:00:01.000Z (UTC)")
    cell.hover()
    viewer.shot("local-time")
