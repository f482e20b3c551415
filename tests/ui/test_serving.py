"""How the collector serves the viewer: without a key, from the package, with the headers that keep it safe;
and what the viewer's own files may not contain (no HTML parsing of data, no inline script or style)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from collector.ui.serve import load_assets
from tests.helpers import REPO, ThreadedCollector, request

STATIC = Path(__file__).resolve().parents[2] / "collector" / "ui" / "static"
ASSET_BUDGET_BYTES = 200 * 1024


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/ui/", "/ui/js/main.js", "/ui/viewer.css", "/ui/icon.svg", "/ui/nothing.js", "/ui"])
def test_every_ui_response_carries_the_security_headers(ui_collector: ThreadedCollector, path: str) -> None:
    reply = request("GET", ui_collector.url + path)  # no key: the page holds no data
    assert reply.status == (404 if "nothing" in path else 308 if path == "/ui" else 200)
    headers = reply.headers
    policy = headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    directives = csp_directives(policy)
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"] and directives["style-src"] == ["'self'"]
    assert directives["connect-src"] == ["'self'"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


def test_the_page_is_public_but_its_data_is_not(ui_collector: ThreadedCollector) -> None:
    page = request("GET", f"{ui_collector.url}/ui/")
    assert page.status == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'<script type="module" src="js/main.js">' in page.body
    script = request("GET", f"{ui_collector.url}/ui/js/main.js")
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"  # module scripts need a JS type
    assert request("GET", f"{ui_collector.url}/v1/audit-log").status == 401


def test_files_are_revalidated_by_etag_and_the_redirect_keeps_the_view(ui_collector: ThreadedCollector) -> None:
    first = request("GET", f"{ui_collector.url}/ui/viewer.css")
    assert first.headers["Cache-Control"] == "no-cache"
    again = request("GET", f"{ui_collector.url}/ui/viewer.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b""
    moved = request("GET", f"{ui_collector.url}/ui?outcome=failure&range=7d")
    assert moved.headers["Location"] == "/ui/?outcome=failure&range=7d"


def test_no_path_outside_the_static_folder_is_served(ui_collector: ThreadedCollector) -> None:
    for path in ("/ui/../app.py", "/ui/%2e%2e/serve.py", "/ui/serve.py", "/ui/js/../../serve.py", "/ui/__init__.py"):
        reply = request("GET", ui_collector.url + path)
        assert reply.status == 404, (path, reply.status)
        assert b"import" not in reply.body


def test_assets_stay_under_the_budget() -> None:
    """Everything the viewer can load, counted uncompressed: under 200 KB (the browser test also counts what
    a page load actually transfers)."""
    total = sum(len(asset.body) for asset in load_assets().values())
    assert total < ASSET_BUDGET_BYTES, f"the viewer's files add up to {total} bytes"


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("an inline <script>")
        self.in_script = tag == "script"
        if tag == "style":
            self.problems.append("a <style> element")
        for name in names:
            if name.startswith("on") or name == "style":
                self.problems.append(f"attribute {name} on <{tag}>")

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append("script text")


def test_the_page_has_no_inline_script_style_or_handlers() -> None:
    markup = _Markup()
    markup.feed((STATIC / "index.html").read_text())
    assert markup.problems == []


# What would turn text into markup or code. dom.js's comment names the rule; this keeps it.
_FORBIDDEN = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['\"]on"
)


def test_scripts_never_parse_text_as_html_or_code() -> None:
    found = [
        f"{path.relative_to(STATIC)}:{number}: {line.strip()}"
        for path in sorted(STATIC.rglob("*.js"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _FORBIDDEN.search(line) and not line.lstrip().startswith("//")
    ]
    assert found == []


@pytest.mark.e2e
def test_a_built_wheel_carries_every_file_the_viewer_serves(tmp_path: Path) -> None:
    """``pip install`` of the package (not only this checkout) serves the viewer: package-data ships static/."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("sidetrail-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"collector/ui/static/{name}" for name in load_assets()} <= names
