"""Client order ids: unique across boots and instances, short enough for venues, recognisably ours."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.brokers.client_ids import (
    MAX_LEN,
    MAX_PART,
    ClientIdFactory,
    ClientIdParts,
    boot_id_from_time,
    is_ours,
    next_boot_id,
    parse,
    to_base36,
)

BINANCE = re.compile(r"[a-zA-Z0-9\-_]{1,36}")
prefixes = st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True)
parts = st.integers(min_value=0, max_value=MAX_PART)


def test_ids_have_prefix_boot_and_seq_in_base36() -> None:
    f = ClientIdFactory("dd1", boot=36 * 36 + 1)

    assert [f.next(), f.next(), f.next()] == ["dd1-101-0", "dd1-101-1", "dd1-101-2"]


def test_start_seq_continues_a_run() -> None:
    assert ClientIdFactory("dd1", boot=0, start_seq=35).next() == "dd1-0-z"


@given(prefixes, parts, parts)
def test_parse_inverts_the_factory_and_ids_fit_binance(prefix: str, boot: int, seq: int) -> None:
    cid = ClientIdFactory(prefix, boot, seq).next()

    assert parse(cid) == ClientIdParts(prefix, boot, seq)
    assert len(cid) <= MAX_LEN and BINANCE.fullmatch(cid)


@given(st.tuples(prefixes, parts, parts), st.tuples(prefixes, parts, parts))
def test_distinct_triples_give_distinct_ids(a: tuple[str, int, int], b: tuple[str, int, int]) -> None:
    ida, idb = ClientIdFactory(*a).next(), ClientIdFactory(*b).next()

    assert (ida == idb) == (a == b)


def test_ids_are_unique_across_boots_of_one_instance() -> None:
    boot = None
    seen: set[str] = set()
    for _ in range(20):
        boot = next_boot_id(boot)
        f = ClientIdFactory("dd1", boot)
        seen.update(f.next() for _ in range(100))

    assert len(seen) == 2000


def test_time_boot_id_is_milliseconds() -> None:
    assert boot_id_from_time(1_763_786_400_123_456_789) == 1_763_786_400_123
    assert len(ClientIdFactory("dd1", boot_id_from_time(1_763_786_400_123_456_789)).next()) < 20


@pytest.mark.parametrize("cid", ["", "dd1", "dd1-0", "dd1-01-0", "dd1-0-00", "dd1-A-0", "dd1--0", "x-dd1-0-0",
                                 "toolongpfx-0-0", "dd1-0-0-0", "web_abcdef", "dd 1-0-0",
                                 "dd1-" + "1" * 14 + "-0"])
def test_parse_refuses_foreign_and_non_canonical_ids(cid: str) -> None:
    assert parse(cid) is None
    assert not is_ours(cid, "dd1")


def test_is_ours_tells_own_orders_from_another_instances() -> None:
    mine, other = ClientIdFactory("dd1", 5), ClientIdFactory("dd2", 5)

    assert mine.is_ours(mine.next())
    assert not mine.is_ours(other.next())
    assert is_ours("dd1-5-0", "dd1") and not is_ours("dd1-5-0", "dd")


@pytest.mark.parametrize(("prefix", "boot", "seq"), [("", 0, 0), ("a-b", 0, 0), ("abcdefghi", 0, 0), ("é", 0, 0),
                                                     ("dd1", -1, 0), ("dd1", MAX_PART + 1, 0), ("dd1", 0, -1)])
def test_factory_refuses_bad_parts_naming_them(prefix: str, boot: int, seq: int) -> None:
    with pytest.raises(ValueError, match=r"prefix|boot|start_seq"):
        ClientIdFactory(prefix, boot, seq)


def test_sequence_exhaustion_is_an_error_not_a_reused_id() -> None:
    f = ClientIdFactory("dd1", 0, MAX_PART)
    f.next()

    with pytest.raises(ValueError, match="exhausted"):
        f.next()


def test_base36_and_boot_edges() -> None:
    assert [to_base36(n) for n in (0, 35, 36, 46655)] == ["0", "z", "10", "zzz"]
    with pytest.raises(ValueError):
        to_base36(-1)
    with pytest.raises(ValueError):
        next_boot_id(MAX_PART)
    with pytest.raises(ValueError):
        boot_id_from_time(-1)
    assert next_boot_id(None) == 0 and next_boot_id(41) == 42
