"""The sample-session generator: seeded and byte-reproducible, and it writes a valid recording of a
book that is on the grid and never crossed, checked here by an independent replay."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from daemon.instruments import Instrument
from daemon.sources.recording import RecordingReader
from daemon.sources.records import RawRecord

GENERATOR = Path(__file__).resolve().parents[1] / "replay_data" / "make_sample.py"
MINUTES = 1.0
SEED = 7
T0_NS = 1_767_225_600_000_000_000
SIMUSD = Instrument("SIMUSD", tick_size=0.01, lot_size=0.0001)


def load_generator() -> ModuleType:
    """Import replay_data/make_sample.py from its path (replay_data is not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_sample() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def sample(make_sample: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sample") / "first.rec.zst"
    summary = make_sample.generate(out, seed=SEED, minutes=MINUTES)
    return out, summary


@pytest.fixture(scope="module")
def records(sample: tuple[Path, dict[str, Any]]) -> list[RawRecord]:
    return list(RecordingReader(sample[0]))


def ticks(levels: list[list[float]]) -> list[tuple[int, int]]:
    """Decimal [price, qty] levels to (ticks, lots); the instrument refuses anything off the grid."""
    if not levels:
        return []
    arr = np.asarray(levels, dtype=np.float64)
    return list(zip(SIMUSD.price_to_ticks(arr[:, 0]).tolist(), SIMUSD.qty_to_lots(arr[:, 1]).tolist(), strict=True))


def test_same_seed_gives_identical_bytes(make_sample: ModuleType, sample: tuple[Path, Any], tmp_path: Path) -> None:
    again = tmp_path / "again.rec.zst"

    make_sample.generate(again, seed=SEED, minutes=MINUTES)

    assert again.read_bytes() == sample[0].read_bytes()


def test_different_seed_gives_different_bytes(
    make_sample: ModuleType, sample: tuple[Path, Any], tmp_path: Path
) -> None:
    other = tmp_path / "other.rec.zst"

    make_sample.generate(other, seed=SEED + 1, minutes=MINUTES)

    assert other.read_bytes() != sample[0].read_bytes()


def test_header_names_generic_venue_and_simusd(sample: tuple[Path, Any]) -> None:
    reader = RecordingReader(sample[0])

    assert reader.venue == "generic"
    assert reader.symbols == ["SIMUSD"]
    assert reader.header["seed"] == SEED
    assert reader.header["generator"] == "replay_data/make_sample.py"


def test_times_start_at_2026_and_never_go_backwards(records: list[RawRecord]) -> None:
    recv = [r.ts_recv for r in records]
    venue = [r.msg["ts"] for r in records]

    assert venue[0] == T0_NS
    assert all(type(t) is int for t in venue)
    assert all(a <= b for a, b in itertools.pairwise(recv))
    assert all(a <= b for a, b in itertools.pairwise(venue))
    assert all(v <= r for v, r in zip(venue, recv, strict=True))
    assert recv[-1] - recv[0] > 0.9 * MINUTES * 60e9


def test_channels_and_symbol_match_the_message_kind(records: list[RawRecord]) -> None:
    expected = {"snapshot": "book", "delta": "book", "trade": "trade"}

    assert all(r.symbol == "SIMUSD" for r in records)
    assert all(r.channel == expected[r.msg["kind"]] for r in records)


def test_every_price_and_size_is_on_the_grid(records: list[RawRecord]) -> None:
    for r in records:
        m = r.msg
        levels = [[m["price"], m["qty"]]] if m["kind"] == "trade" else m["bids"] + m["asks"]
        ticks(levels)  # raises OffGridError off the grid
        assert all(p == round(p, 2) and q == round(q, 4) for p, q in levels), f"line {r.line}"


def test_replayed_book_is_never_crossed_or_locked(records: list[RawRecord]) -> None:
    bids: dict[int, int] = {}
    asks: dict[int, int] = {}
    snapshots = 0
    for r in records:
        m = r.msg
        if m["kind"] == "trade":
            book = asks if m["side"] == "buy" else bids
            ((price, qty),) = ticks([[m["price"], m["qty"]]])
            assert 0 < qty <= book.get(price, 0), f"line {r.line}: trade not against a resting level"
            continue
        if m["kind"] == "snapshot":
            if snapshots:
                assert (bids, asks) == (dict(ticks(m["bids"])), dict(ticks(m["asks"]))), "re-snapshot differs"
            snapshots += 1
            bids, asks = dict(ticks(m["bids"])), dict(ticks(m["asks"]))
        else:
            for side, levels in ((bids, m["bids"]), (asks, m["asks"])):
                for price, qty in ticks(levels):
                    if qty:
                        side[price] = qty
                    else:
                        assert side.pop(price, None) is not None, f"line {r.line}: deletes a missing level"
        assert bids and asks, f"line {r.line}: empty side"
        assert max(bids) < min(asks), f"line {r.line}: crossed or locked"

    assert snapshots == 2


def test_summary_counts_what_the_file_holds(sample: tuple[Path, dict[str, Any]], records: list[RawRecord]) -> None:
    kinds: dict[str, int] = {}
    for r in records:
        kinds[r.msg["kind"]] = kinds.get(r.msg["kind"], 0) + 1

    summary = sample[1]

    assert summary["lines_by_kind"] == dict(sorted(kinds.items()))
    assert summary["lines"] == len(records)
    assert summary["bytes"] == sample[0].stat().st_size


def test_cli_writes_the_file_and_prints_the_summary(
    make_sample: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.rec.zst"

    code = make_sample.main(["--seed", "3", "--minutes", "0.2", "--out", str(out)])

    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seed"] == 3 and summary["bytes"] == out.stat().st_size
