"""Shared fixtures: paths to the shipped sample and the real data beside the repo, small configs."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE = REPO / "replay_data" / "sample.rec.zst"
CONFIG = REPO / "config.toml"


def write_ndjson(path: Path, lines: list[dict | bytes]) -> Path:
    """Write normalized L2 lines (dicts are serialised, bytes written as they are)."""
    path.write_bytes(b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines))
    return path


def snapshot(ts: int, bids: list, asks: list) -> dict:
    return {"ts": ts, "kind": "snapshot", "bids": bids, "asks": asks}


def delta(ts: int, bids: list | None = None, asks: list | None = None) -> dict:
    return {"ts": ts, "kind": "delta", "bids": bids or [], "asks": asks or []}


def trade(ts: int, price: float, qty: float, side: str) -> dict:
    return {"ts": ts, "kind": "trade", "price": price, "qty": qty, "side": side}


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip saying why."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recorded data not available: {SHARED_DATA} is absent (it ships beside the repo)")
    return SHARED_DATA
