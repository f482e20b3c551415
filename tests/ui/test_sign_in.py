"""Signing in and out: the key is checked, kept in sessionStorage only, sent as a header, never in a URL."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.helpers import ThreadedCollector
from tests.ui.conftest import KEY_STORAGE
from tests.ui.data import ingest, series


def test_sign_in_refuses_bad_keys_keeps_a_good_one_in_session_storage_and_signs_out(
    ui_collector: ThreadedCollector, viewers: Any
) -> None:
    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(6))  # two of them failures
    read_key, ingest_key = ui_collector.key("acme", "read"), ui_collector.key("acme", "ingest")
    viewer = viewers(ui_collector)
    page = viewer.page
    viewer.open("?range=all&outcome=failure")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    viewer.shot("sign-in")

    viewer.sign_in("st_0123456789abcdef_notakey")
    expect(page.get_by_role("alert")).to_contain_text("The key was not accepted")
    viewer.sign_in(ingest_key)  # a real key of the wrong scope
    expect(page.get_by_role("alert")).to_contain_text("This key cannot read the audit log")
    expect(page.get_by_role("alert")).to_contain_text("scope 'read'")
    viewer.shot("wrong-scope")

    viewer.sign_in(read_key)
    expect(viewer.rows()).to_have_count(2)  # the bookmarked view: the failures
    expect(page.get_by_label("Outcome")).to_have_value("failure")
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") == read_key
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    viewer.shot("signed-in")

    page.reload()  # the tab keeps its session
    expect(viewer.rows()).to_have_count(2)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(viewer.rows()).to_have_count(0)
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None
    viewer.shot("signed-out")

    for url in viewer.requested:  # the key never travelled in a URL
        assert read_key not in url and ingest_key not in url and "notakey" not in url
    assert "key" not in page.url


def test_a_revoked_key_returns_to_sign_in_with_the_reason(ui_collector: ThreadedCollector, viewers: Any) -> None:
    from collector.api.state import STORAGE  # the key store, as the CLI revokes through it
    from collector.keys import parse_key_id
    from core.event import now_ms

    ingest(ui_collector, ui_collector.key("acme", "ingest"), series(3))
    read_key = ui_collector.key("acme", "read")
    viewer = viewers(ui_collector, key=read_key)
    viewer.open("?range=all")
    viewer.wait_loaded()  # the rows and the chart: no request of the page is still on its way
    expect(viewer.rows()).to_have_count(3)
    key_id = parse_key_id(read_key)
    assert key_id is not None
    ui_collector.call(ui_collector.app[STORAGE].revoke_key(key_id, now_ms()))
    viewer.page.get_by_role("button", name="Apply").click()
    expect(viewer.page.get_by_role("alert")).to_have_text(re.compile("not valid or was revoked"))
    expect(viewer.page.get_by_role("heading", name="Sign in")).to_be_visible()
