"""The collector's lag histogram, fed a request at a time, exposes what prometheus_client's Histogram would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from collector.metrics import LagHistogram

BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400)


def exposition(registry: CollectorRegistry) -> tuple[list[str], float]:
    """Every line but ``_created``, and the ``_sum`` value apart (ours adds integer ms: no float drift)."""
    lines = [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]
    total = next(float(line.split()[1]) for line in lines if line.startswith("x_lag_seconds_sum"))
    return [line for line in lines if not line.startswith("x_lag_seconds_sum")], total


@given(st.lists(st.lists(st.integers(-5_000, 100_000_000), max_size=20), max_size=5))
def test_lag_histogram_matches_prometheus_client(requests: list[list[int]]) -> None:
    ours, reference = CollectorRegistry(), CollectorRegistry()
    lag = LagHistogram("x_lag_seconds", "Lag.", BUCKETS, ours)
    expected = Histogram("x_lag_seconds", "Lag.", buckets=BUCKETS, registry=reference)
    received_at = 1_800_000_000_000
    for lags_ms in requests:
        lag.observe_ms(received_at, [received_at - ms for ms in lags_ms])
        for ms in lags_ms:
            expected.observe(max(0.0, ms / 1000))
    (lines, total), (expected_lines, expected_total) = exposition(ours), exposition(reference)
    assert lines == expected_lines
    assert total == pytest.approx(expected_total)
