"""A live depthd session against a fake venue on loopback, for the live-path tests and the latency bench.

`LiveHarness` starts the fake venue and a `LiveSession` (paper trading, real websocket + REST clients)
pointed at it, watches every intent the engine submits (and the book state it was submitted on) and
tells whether the daemon's book equals the fake venue's true book.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.config import Settings, settings_from_dict
from daemon.events import OrderIntent
from daemon.live import LiveSession

GRIDS = {"binance": (0.01, 0.00001), "binance_usdm": (0.1, 0.001), "okx": (0.1, 0.000001)}


def live_settings(tmp: Path, venue: str, symbols: list[str], ws_url: str, rest_url: str = "",
                  **sections: dict[str, Any]) -> Settings:
    """Paper trading on a loopback venue: fast reconnects and watchdog, the imbalance strategy."""
    tick, lot = GRIDS[venue]
    raw: dict[str, Any] = {
        "daemon": {"mode": "paper", "instance": "test"},
        "instruments": {s: {"tick_size": tick, "lot_size": lot} for s in symbols},
        "features": {"sample_interval_ms": 50},
        "strategy": {"name": "imbalance", "params": {"threshold": 0.05, "persistence_ms": 0, "max_position": 0.01,
                                                     "position_step": 0.001}},
        "risk": {"halt_file": str(tmp / "halt.json"), "max_position": 1.0, "max_order_qty": 1.0,
                 "max_notional": 1e9, "max_order_notional": 1e9, "max_orders_per_second": 1000,
                 "max_orders_per_minute": 100_000, "price_band_bps": 10_000, "feed_stale_ms": 60_000,
                 "triggers": {"feed_stale_ms": {"threshold": 60_000}, "book_invalid_ms": {"threshold": 60_000},
                              "feed_down": {"enabled": False}}},
        "feed": {"venue": venue, "symbols": symbols, "ws_url": ws_url, "rest_url": rest_url,
                 "stale_after_s": 1.0, "ping_interval_s": 0.5, "ping_timeout_s": 0.5, "reconnect_initial_s": 0.05,
                 "reconnect_max_s": 0.2, "rest_timeout_s": 2.0},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return settings_from_dict(raw)


class LiveHarness:
    """A LiveSession running against `fake` until `stop()`."""

    def __init__(self, fake: Any, settings: Settings, record_only: bool = False) -> None:
        self.fake = fake
        self.session = LiveSession(settings, record_only=record_only)
        self.submitted: list[tuple[OrderIntent, bool]] = []  # (intent, its book tradeable when submitted)
        engine = self.session.path.engine
        submit = engine.submit

        def watch(intent: OrderIntent) -> Any:
            self.submitted.append((intent, engine.syncs[intent.symbol].tradeable))
            return submit(intent)

        engine.submit = watch  # type: ignore[method-assign]
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveHarness:
        self._task = asyncio.create_task(self.session.run(self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop the session and wait for it to close its connections and files."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
            self._task = None

    def sync(self, symbol: str) -> Any:
        """The symbol's BookSync in the daemon."""
        return self.session.path.engine.syncs[symbol]

    def book_levels(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The daemon's book as decimals, best first (the fake's true_book shape)."""
        inst = self.session.path.instruments[symbol]
        book = self.sync(symbol).book
        bp, bq, ap, aq = book.top(max(book.n_bid, book.n_ask))

        def dec(px: Any, qty: Any) -> list[tuple[Decimal, Decimal]]:
            return [(Decimal(repr(inst.price(int(p)))), Decimal(repr(inst.qty(int(q))))) for p, q in zip(px, qty,
                                                                                                         strict=True)]
        return dec(bp, bq), dec(ap, aq)

    def in_step(self, symbol: str, trusted_only: bool = False) -> bool:
        """LIVE, caught up with the fake's last update id, and equal to its true book (`trusted_only`:
        the levels within the snapshot's depth equal the true book's best levels)."""
        sync = self.sync(symbol)
        if not sync.live or sync.last_seq != self.fake.update_id(symbol):
            return False
        bids, asks = self.book_levels(symbol)
        true_bids, true_asks = self.fake.true_book(symbol)
        if not trusted_only:
            return (bids, asks) == (true_bids, true_asks)
        nb, na = sync.book.trusted_levels()
        return bids[:nb] == true_bids[:nb] and asks[:na] == true_asks[:na] and sync.book.top_trusted()

    async def until(self, pred: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Wait (polling) until pred() holds; fail naming `what` after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
            await asyncio.sleep(0.01)

    async def settle(self, symbol: str, push: int = 20, timeout: float = 10.0, trusted_only: bool = False) -> None:
        """Push events until the daemon's book is LIVE and equal to the true book."""
        deadline = time.monotonic() + timeout
        while not self.in_step(symbol, trusted_only):
            if time.monotonic() > deadline:
                sync = self.sync(symbol)
                raise AssertionError(f"book of {symbol} not in step: state {sync.state}, seq {sync.last_seq} vs "
                                     f"venue {self.fake.update_id(symbol)}, health {self.session.adapter.health}")
            await self.fake.push(push)
            await asyncio.sleep(0.05)

    def intents_on_untradeable_books(self) -> list[OrderIntent]:
        """Every intent submitted while its book was not tradeable (must be none)."""
        return [intent for intent, ok in self.submitted if not ok]
