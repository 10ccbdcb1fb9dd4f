"""merge_by_receive_time: one session from several inputs, ordered and deterministic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from daemon.sources import RawRecord, merge_by_receive_time


def stream(name: str, times: list[int]) -> list[RawRecord]:
    """Records from file `name` at the given receive times, numbered by line."""
    return [RawRecord(t, "X", "book", {}, name, i) for i, t in enumerate(times, start=1)]


def test_orders_records_by_receive_time() -> None:
    a = stream("a", [1, 4, 9])
    b = stream("b", [2, 3, 10])

    merged = list(merge_by_receive_time([a, b]))

    assert [r.ts_recv for r in merged] == [1, 2, 3, 4, 9, 10]


def test_ties_go_to_lower_stream_index_then_file_order() -> None:
    a = stream("a", [5, 5])
    b = stream("b", [5, 5])

    merged = list(merge_by_receive_time([b, a]))

    assert [(r.path, r.line) for r in merged] == [("b", 1), ("b", 2), ("a", 1), ("a", 2)]


def test_single_and_empty_inputs() -> None:
    a = stream("a", [1, 2])

    assert list(merge_by_receive_time([a])) == a
    assert list(merge_by_receive_time([a, []])) == a
    assert list(merge_by_receive_time([])) == []


@given(st.lists(st.lists(st.integers(0, 20)).map(sorted), max_size=5))
def test_merge_is_the_stable_sort_of_all_inputs(times: list[list[int]]) -> None:
    streams = [stream(str(i), ts) for i, ts in enumerate(times)]

    merged = list(merge_by_receive_time(streams))

    expected = sorted((r for s in streams for r in s), key=lambda r: r.ts_recv)
    assert merged == expected
