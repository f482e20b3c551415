"""Gap detection per source stream, run inside the write transaction.

Agents number the events of each file and give each event the byte range from the end of the previous
event to the end of its own line, so consecutive events tile the file (the source stamp,
``core/source.py``). The collector remembers, per (tenant, agent, source, stream), the last sequence
number and byte offset it stored. An event whose ``seq`` jumps ahead, or whose range starts past the
last end, marks a gap: events or bytes that never arrived (a batch dropped, events rejected, a
database restored from an older backup). The event after the gap carries
``source.gap = {"events": n, "bytes": b}`` and the collector counts it. An event at or below the last
sequence number is a resend and changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from core.source import mark_gap, read_position

StreamKey = tuple[str, str, str, str]


@dataclass
class GapStats:
    gaps: int = 0
    missing_events: int = 0
    missing_bytes: int = 0


Position = tuple[StreamKey, int, int, int, dict[str, Any]]  # stream, seq, range start, range end, event


def stream_positions(events: list[dict[str, Any]]) -> list[Position]:
    """Where each event sits in its stream; events without a well-formed position are left out.

    Computed once per batch: its keys tell which stored positions to load, then :func:`track_gaps`
    walks it.
    """
    positions: list[Position] = []
    for event in events:
        position = read_position(event["source"])
        if position is not None:
            agent_id, name, stream, seq, start, end = position
            positions.append(((event["tenant_id"], agent_id, name, stream), seq, start, end, event))
    return positions


def stream_keys(positions: list[Position]) -> set[StreamKey]:
    """The streams a batch touches: their stored positions must be loaded before :func:`track_gaps`."""
    return {position[0] for position in positions}


def track_gaps(
    positions: list[Position], known: dict[StreamKey, tuple[int, int]]
) -> tuple[GapStats, dict[StreamKey, tuple[int, int]]]:
    """Annotate events that follow a gap. ``known`` holds each stream's stored (last seq, last end);
    returns the stats and the new positions to store."""
    stats = GapStats()
    by_stream: dict[StreamKey, list[tuple[int, int, int, dict[str, Any]]]] = defaultdict(list)
    for key, seq, start, end, event in positions:
        by_stream[key].append((seq, start, end, event))
    updates: dict[StreamKey, tuple[int, int]] = {}
    for key, items in by_stream.items():
        last = known.get(key)
        items.sort(key=lambda item: item[0])
        for seq, start, end, event in items:
            if last is not None:
                last_seq, last_end = last
                if seq <= last_seq:
                    continue  # a resend
                missing_events, missing_bytes = seq - last_seq - 1, max(0, start - last_end)
                if missing_events or missing_bytes:
                    mark_gap(event["source"], missing_events, missing_bytes)
                    stats.gaps += 1
                    stats.missing_events += missing_events
                    stats.missing_bytes += missing_bytes
            last = (seq, end)
        if last is not None and last != known.get(key):
            updates[key] = last
    return stats, updates
