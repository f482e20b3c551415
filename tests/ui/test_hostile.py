"""Events written by an attacker: script payloads in the path, user agent, actor, action, resource and metadata,
a 10 KB line and right-to-left overrides. In the browser none of them runs (a payload would set window.__pwned,
create an element, trip the CSP or throw), the page keeps working, and every value is shown exactly as written."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.helpers import ThreadedCollector
from tests.ui.conftest import Viewer
from tests.ui.data import BASE_MS, event, ingest

IMG = "<img src=x onerror=\"window.__pwned='img'\">"
SCRIPT = '"><script>window.__pwned="script"</script>'
JS_URL = 'javascript:window.__pwned="link"'
SVG = "<svg onload=\"window.__pwned='svg'\"></svg>"
IFRAME = "<iframe src=\"javascript:window.__pwned='iframe'\"></iframe>"
RLO = "invoice\u202egnp.exe"  # shows as "invoiceexe.png" unless isolated
LONG = "<b>" + "x" * 10_240 + "</b>"  # a 10 KB line

HOSTILE = [
    event(
        1, BASE_MS + 1000,
        action="user.login",
        path="/search?q=" + IMG,
        actor_id=JS_URL,
        actor_name=SCRIPT,
        user_agent=SVG,
        resource_type="<b>bold</b>",
        resource_id=JS_URL,
        request_id=IFRAME,
        metadata={IMG: SCRIPT, "long": LONG, "rlo": RLO, "nested": {"frame": IFRAME, "list": [SVG, JS_URL]}},
    ),
    event(2, BASE_MS + 2000, action=IMG, actor_id=RLO, path="/" + "p" * 8000, resource_id=RLO, metadata={"n": LONG}),
    event(3, BASE_MS + 3000, action="user.deleted", actor_id="alice", path="/api/v1/users/43"),
]  # fmt: skip
INJECTED = "img:not([src='icon.svg']), script:not([src]), iframe, svg[onload], b, [onerror], [onload], [onclick]"


def assert_nothing_ran(viewer: Viewer) -> None:
    page = viewer.page
    assert page.evaluate("window.__pwned") is None
    assert page.locator(INJECTED).count() == 0
    assert viewer.violations() == []  # nothing even tried to run and was stopped by the CSP
    assert viewer.errors == [] and viewer.console_errors == []


def row_cells(viewer: Viewer, index: int) -> list[str]:
    return viewer.page.locator(f"#rows [role=row][aria-rowindex='{index + 2}'] [role=gridcell]").all_text_contents()


def test_hostile_event_content_is_shown_as_text_and_never_runs(ui_collector: ThreadedCollector, viewers: Any) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), HOSTILE)
    viewer = viewers(ui_collector, key=ui_collector.key("acme", "read"))
    page = viewer.page
    viewer.open("?range=all")
    viewer.wait_loaded()
    expect(viewer.rows()).to_have_count(3)
    viewer.shot("table")

    # The table, newest first: each cell's text is the value as written.
    worst, second = HOSTILE[0], HOSTILE[1]
    assert row_cells(viewer, 1)[1:4] == [RLO, IMG, f"invoice {RLO}"]
    assert row_cells(viewer, 1)[6] == "PUT " + second["path"]
    assert row_cells(viewer, 2)[1:4] == [SCRIPT, "user.login", f"<b>bold</b> {JS_URL}"]
    assert row_cells(viewer, 2)[6] == "POST /search?q=" + IMG
    assert_nothing_ran(viewer)

    # The detail of the worst one: every field and the metadata as written, links only to this page.
    page.locator("#rows [role=row][aria-rowindex='4']").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    names, values = dialog.locator(".fields dt").all_text_contents(), dialog.locator(".fields dd").all()
    fields = dict(zip(names, values, strict=True))
    for name in ("path", "actor_id", "actor_name", "user_agent", "resource_type", "resource_id", "request_id"):
        assert fields[name].locator(".value").text_content() == worst[name], name
    metadata = dialog.get_by_role("region", name="metadata").locator("pre").text_content()
    assert json.loads(metadata or "") == worst["metadata"]
    hrefs = [link.get_attribute("href") or "" for link in dialog.locator("a").all()]
    assert len(hrefs) == 3 and all(href.startswith("/ui/?") for href in hrefs), hrefs
    assert all(link.evaluate("a => a.protocol") == "http:" for link in dialog.locator("a").all())
    viewer.shot("detail")
    assert_nothing_ran(viewer)

    # Following "events by this actor" (actor_id javascript:...) filters on it, literally.
    dialog.get_by_role("link", name="Events by this actor").click()
    expect(dialog).to_be_hidden()
    page.wait_for_url(lambda url: "actor_id=eq%3Ajavascript" in url)
    expect(viewer.rows()).to_have_count(1)
    expect(page.get_by_label("Actor", exact=True)).to_have_value(f"eq:{JS_URL}")
    assert row_cells(viewer, 0)[1] == SCRIPT
    assert_nothing_ran(viewer)

    # The direction override is flagged in the detail, and kept from reordering its neighbours in the table.
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Time range").select_option("all")
    expect(viewer.rows()).to_have_count(3)
    page.locator("#rows [role=row][aria-rowindex='3']").click()
    expect(dialog.locator(".warning").first).to_contain_text("U+202E")
    assert dialog.locator(".fields dd", has_text="gnp.exe").first.locator(".value").text_content() == RLO
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    cell = page.locator("#rows [role=row][aria-rowindex='3'] [role=gridcell]").nth(1)
    assert cell.evaluate("cell => getComputedStyle(cell).unicodeBidi") == "isolate"

    # The chart's legend and bar titles, grouped by action, hold the payload action as text.
    page.get_by_label("Group by").select_option("action")
    expect(page.locator(".legend li", has_text="<img")).to_have_text(f"{IMG} 1")
    viewer.shot("chart-by-action")

    # Hostile text typed into the search box is a parameter like any other.
    page.get_by_label("Search").fill(IMG)
    page.get_by_label("Search").press("Enter")
    expect(page.locator("#status")).to_have_text("All 2 events.")  # q matches action and path
    assert_nothing_ran(viewer)

    # And the page still works.
    page.get_by_role("button", name="Clear").click()
    page.get_by_label("Time range").select_option("all")
    page.get_by_label("Actor", exact=True).fill("alice")
    page.get_by_label("Actor", exact=True).press("Enter")
    expect(viewer.rows()).to_have_count(1)
    assert row_cells(viewer, 0)[2] == "user.deleted"
    assert_nothing_ran(viewer)
