"""BatchProcessor: batches bounded by count and bytes, in order, with positions in the right batch."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import BatchConfig
from agent.processors.batch import BatchProcessor
from agent.stages import BatchQueue, FileRef, Position

REF = FileRef("web", "k1", "/x.log", 1, 2, b"")


def reference_batches(chunks: list[list[bytes]], max_events: int, max_bytes: int) -> list[list[bytes]]:
    """One event at a time: ship when the next one would pass either bound (a lone event may be too big).
    Events end with their separating comma, which does not count against ``max_bytes`` for the last one."""
    batches: list[list[bytes]] = [[]]
    size = 0
    for chunk in chunks:
        for event in chunk:
            if batches[-1] and (len(batches[-1]) >= max_events or size + len(event) - 1 > max_bytes):
                batches.append([])
                size = 0
            batches[-1].append(event)
            size += len(event)
    return [b for b in batches if b]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=40).map(lambda b: b + b","), max_size=12), min_size=1, max_size=6),
    st.integers(1, 7),
    st.integers(1, 120),
)
def test_batches_match_the_one_at_a_time_reference(chunks: list[list[bytes]], max_events: int, max_bytes: int) -> None:
    async def run() -> list[list[bytes]]:
        queue = BatchQueue(capacity=10_000)
        batcher = BatchProcessor(BatchConfig(max_events=max_events, max_bytes=max_bytes), queue)
        for offset, chunk in enumerate(chunks):
            await batcher.add(chunk, Position(REF, offset + 1, 0, 0))
        await batcher.flush()
        batches = []
        while (batch := queue.peek()) is not None:
            assert batch.size == sum(len(e) for e in batch.events)
            batches.append(batch)
            queue.pop()
        assert batches[-1].positions["k1"].offset == len(chunks)  # the last chunk's position, in the last batch
        return [b.events for b in batches if b.events]

    assert asyncio.run(run()) == reference_batches(chunks, max_events, max_bytes)
