"""The verifier on its own, fed rows from a list as an exported file would feed it: no database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.integrity.chain import GENESIS, link
from collector.integrity.checkpoints import Checkpoint, Cut, sign
from collector.integrity.signing import KeyRing, Signer, create_key_file
from collector.integrity.verify import Verifier
from tests.collector.integrity_helpers import stored_event

Row = tuple[int, bytes, dict[str, Any]]


def chain(count: int, tenant: str = "acme") -> list[Row]:
    rows, previous = [], GENESIS
    for n in range(1, count + 1):
        event = {**stored_event(n, tenant=tenant), "seq": 100 + n}
        previous = link(previous, event)
        rows.append((n, previous, event))
    return rows


def checkpoint(signer: Signer, rows: list[Row], position: int, **extra: Any) -> Checkpoint:
    return sign(signer, Checkpoint("acme", position, rows[position - 1][1], 1_700_000_000_000, "", **extra))


def found(rows: list[Row], checkpoints: list[Checkpoint], keys: KeyRing, **finish: Any) -> list[tuple[str, Any]]:
    verifier = Verifier("acme", keys, checkpoints)
    for row in rows:
        verifier.feed(*row)
    report = verifier.finish(**finish)
    return [(f.kind, f.position) for f in report.findings]


def setup(tmp_path: Path) -> tuple[Signer, KeyRing, list[Row]]:
    signer = create_key_file(tmp_path / "k")
    keys = KeyRing()
    keys.add(signer.public)
    return signer, keys, chain(12)


def test_a_clean_chain_and_its_checkpoints_verify(tmp_path: Path) -> None:
    signer, keys, rows = setup(tmp_path)
    assert found(rows, [checkpoint(signer, rows, 6), checkpoint(signer, rows, 12)], keys) == []


def test_rows_with_swapped_positions_are_reordered_and_the_rest_links(tmp_path: Path) -> None:
    signer, keys, rows = setup(tmp_path)
    rows[4], rows[8] = (5, rows[8][1], rows[8][2]), (9, rows[4][1], rows[4][2])  # rows 5 and 9 trade places
    assert found(rows, [checkpoint(signer, rows, 12)], keys) == [("reordered", 5)]


def test_a_second_row_at_one_position_is_inserted_and_input_out_of_order_is_reordered(tmp_path: Path) -> None:
    _, keys, rows = setup(tmp_path)
    extra = (7, rows[6][1], {**rows[6][2], "action": "forged"})
    assert found([*rows[:7], extra, *rows[7:]], [], keys) == [("inserted", 7)]
    assert found([*rows[:7], rows[2], *rows[7:]], [], keys) == [("reordered", 3)]


def test_checkpoints_of_another_tenant_or_key_are_forged(tmp_path: Path) -> None:
    signer, keys, rows = setup(tmp_path)
    theirs = sign(signer, Checkpoint("globex", 12, rows[11][1], 1, ""))
    stranger = create_key_file(tmp_path / "other")
    assert found(rows, [theirs, checkpoint(stranger, rows, 6)], keys) == [
        ("forged_checkpoint", 6), ("forged_checkpoint", 12),
    ]  # fmt: skip


def test_retention_cuts_explain_missing_positions_and_the_tail_is_held_to_the_latest_checkpoint(
    tmp_path: Path,
) -> None:
    signer, keys, rows = setup(tmp_path)
    cuts = (Cut(1, 3, rows[2][1]), Cut(6, 6, rows[5][1]))
    tombstone = checkpoint(signer, rows, 12, cuts=cuts)
    kept = [row for row in rows if row[0] not in (1, 2, 3, 6)]
    verifier = Verifier("acme", keys, [tombstone])
    for row in kept:
        verifier.feed(*row)
    report = verifier.finish()
    assert report.clean and report.retention_cuts == [(1, 3), (6, 6)]
    assert found(kept[:-3], [tombstone], keys) == [("truncated_tail", 10)]  # a tombstone signs its head too
    assert found(kept[:-3], [tombstone], keys, complete=False) == []  # a partial read checks no tail


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=3, max_value=40).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sampled_from(["modify", "rehash", "delete", "swap", "swap_rows"]),
            st.integers(min_value=1, max_value=n),
            st.integers(min_value=1, max_value=n),
        )
    )
)
def test_one_tampering_anywhere_is_named_with_its_kind_and_first_position(case: tuple[int, str, int, int]) -> None:
    count, how, first, second = case
    rows = chain(count)
    keys = KeyRing()
    index = first - 1
    if how == "modify":
        rows[index] = (first, rows[index][1], {**rows[index][2], "metadata": {"changed": True}})
        expected = [("modified", first)]
    elif how == "rehash":
        rows[index] = (first, bytes(32), rows[index][2])
        expected = [("modified", first)]
    elif how == "delete":
        if first == count:  # the newest row: only a checkpoint or the head record can tell
            del rows[index]
            assert found(rows, [], keys, head=count) == [("truncated_tail", count)]
            return
        del rows[index]
        expected = [("deleted", first)]
    else:
        low, high = sorted((first, second))
        if low == high:
            return
        one, other = rows[low - 1], rows[high - 1]
        if how == "swap":  # contents trade places, positions and hashes stay
            rows[low - 1], rows[high - 1] = (low, one[1], other[2]), (high, other[1], one[2])
        else:  # whole rows trade positions
            rows[low - 1], rows[high - 1] = (low, other[1], other[2]), (high, one[1], one[2])
        expected = [("reordered", low)]
    assert found(rows, [], keys, head=count) == expected
