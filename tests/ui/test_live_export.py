"""Live tail (the changes feed, long-polled) and export (the export route, streamed to a download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from core.event import format_ms, now_ms
from tests.helpers import ThreadedCollector, request, wait_until
from tests.ui.data import BASE_MS, event, ingest, series


def test_live_tail_shows_new_matching_events_and_holds_them_while_scrolled_away(
    ui_collector: ThreadedCollector, viewers: Any
) -> None:
    ingest_key = ui_collector.key("acme", "ingest")
    start = now_ms() - 3_600_000
    ingest(ui_collector, ingest_key, [event(n, start + n * 20_000) for n in range(120)])  # 45 failures
    viewer = viewers(ui_collector, key=ui_collector.key("acme", "read"))
    page = viewer.page
    viewer.open("?outcome=failure")
    viewer.wait_loaded()
    expect(page.locator("#status")).to_have_text("All 45 events.")
    live = page.get_by_role("button", name="Live tail")
    live.click()
    expect(live).to_have_attribute("aria-pressed", "true")
    wait_until(lambda: ui_collector.long_polls_waiting() >= 1, message="the viewer's long-poll")

    # At the top: a new failure appears at once; the success ingested with it does not match the view.
    fresh = event(4, now_ms(), actor_id="mallory", action="user.deleted")  # n=4: a failure (401)
    ingest(ui_collector, ingest_key, [fresh, event(0, now_ms(), actor_id="mallory")])
    expect(page.locator("#status")).to_have_text("All 46 events.")
    assert viewer.cells(1)[0] == "mallory" and viewer.cells(2)[0] == "user.deleted"
    viewer.shot("live-new-event")

    # Scrolled away from the top: new events wait behind a marker until the user comes back.
    page.locator("#grid").evaluate("grid => { grid.scrollTop = 400 }")
    wait_until(lambda: ui_collector.long_polls_waiting() >= 1, message="the next long-poll")
    later = event(5, now_ms() + 1, actor_id="trudy", action="user.deleted")  # n=5: a failure (404)
    ingest(ui_collector, ingest_key, [later])
    marker = page.get_by_role("button", name="1 new event ↑")
    expect(marker).to_be_visible()
    assert "trudy" not in viewer.cells(1)
    viewer.shot("live-paused")
    marker.click()
    expect(marker).to_be_hidden()
    expect(page.locator("#status")).to_have_text("All 47 events.")
    assert viewer.cells(1)[:2] == ["trudy", "mallory"]
    assert page.locator("#grid").evaluate("grid => grid.scrollTop") == 0

    live.click()
    expect(live).to_have_attribute("aria-pressed", "false")
    wait_until(lambda: ui_collector.long_polls_waiting() == 0, message="the long-poll to end")


def export_through_api(collector: ThreadedCollector, key: str, params: dict[str, str]) -> bytes:
    reply = request("GET", f"{collector.url}/v1/audit-log/export", key=key, params=params)
    assert reply.status == 200
    return reply.body


def test_export_downloads_what_the_export_route_returns_for_the_view(
    ui_collector: ThreadedCollector, viewers: Any, tmp_path: Path
) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(400))
    key = ui_collector.key("acme", "read")
    viewer = viewers(ui_collector, key=key, accept_downloads=True)
    page = viewer.page
    view = {"from": format_ms(BASE_MS + 50_000), "to": format_ms(BASE_MS + 350_000), "actor_id": "carol"}
    viewer.open("?" + "&".join(f"{name}={value}" for name, value in view.items()))
    expect(page.locator("#status")).to_have_text("All 60 events.")
    for label, kind in (("Export CSV", "csv"), ("Export NDJSON", "ndjson")):
        with page.expect_download() as started:
            page.get_by_role("button", name=label).click()
        download = started.value
        assert download.suggested_filename == f"audit-log.{kind}"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        expected = export_through_api(ui_collector, key, {**view, "format": kind})
        assert saved.read_bytes() == expected
        assert len(expected.splitlines()) == 60 + (kind == "csv")  # a header line in CSV
        expect(page.locator("#status")).to_have_text(f"Exported {len(expected) / 1024:.1f} KB as audit-log.{kind}.")
    viewer.shot("exported")
