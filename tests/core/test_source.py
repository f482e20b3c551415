"""The source stamp is the agent <-> collector contract: its wire form is pinned here."""

from __future__ import annotations

from typing import Any

import pytest

from core.source import SourceStamp, mark_gap, read_position, stamp


def test_stamp_wire_form_is_pinned() -> None:
    source = stamp("web-1", "host-a", "nginx", "/var/log/a.log", 1000, "1:2:abc", 7, (990, 1180))
    assert list(source.items()) == [
        ("agent_id", "web-1"),
        ("host", "host-a"),
        ("name", "nginx"),
        ("file", "/var/log/a.log"),
        ("offset", 1000),
        ("stream", "1:2:abc"),
        ("seq", 7),
        ("range", [990, 1180]),
    ]
    assert set(SourceStamp.__annotations__) == {*source, "gap"}


def test_position_round_trips_through_the_stamp() -> None:
    source: dict[str, Any] = dict(stamp("web-1", "h", "nginx", "/f", 10, "s1", 3, (5, 20)))
    assert read_position(source) == ("web-1", "nginx", "s1", 3, 5, 20)


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"stream": "s", "seq": 1},
        {"stream": 1, "seq": 1, "range": [0, 1]},
        {"stream": "s", "seq": True, "range": [0, 1]},
        {"stream": "s", "seq": "1", "range": [0, 1]},
        {"stream": "s", "seq": 1, "range": (0, 1)},
        {"stream": "s", "seq": 1, "range": [0, 1, 2]},
        {"stream": "s", "seq": 1, "range": [0, "1"]},
        {"stream": "s", "seq": 1, "range": [0.5, 1]},
    ],
)
def test_sources_without_a_well_formed_position_are_not_tracked(source: dict[str, Any]) -> None:
    assert read_position(source) is None


def test_an_app_source_without_agent_or_name_still_has_a_position() -> None:
    assert read_position({"stream": "s", "seq": 1, "range": [0, 1], "name": 5}) == ("", "5", "s", 1, 0, 1)


def test_mark_gap_adds_the_gap_object() -> None:
    source: dict[str, Any] = {"stream": "s"}
    mark_gap(source, 2, 300)
    assert source == {"stream": "s", "gap": {"events": 2, "bytes": 300}}
