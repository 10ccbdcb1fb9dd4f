"""`depthd run` in live mode with `[broker] kind = "ib"`: market data from a fake Binance, orders through
ib_async's real `IB` client to a loopback fake TWS, a journal, reconciliation on start; and kill -9 of the
running daemon, a fill at IB while it is down, and a restart: the missed fill applied once, nothing lost,
the position equal to IB's."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from daemon.errors import VenueError
from daemon.live import LiveSession
from tests.conftest import REPO
from tests.fakes.binance_venue import FakeBinance
from tests.fakes.tws_orders import FakeTwsOrders
from tests.live_harness import LiveHarness, live_settings
from tests.test_live_broker import _safe_fills, _toml, journal_fills, journal_open_orders, sigterm_once

SYM = "BTCUSDT"
CON = 9001
CONTRACT = {"conId": str(CON), "secType": "CRYPTO", "symbol": "BTC", "exchange": "PAXOS", "currency": "USD"}
LOT = 0.00001


def ib_live(tmp: Path, md: FakeBinance, port: int, **broker: object) -> object:
    return live_settings(tmp, "binance", [SYM], md.ws_url, md.rest_url,
                         daemon={"mode": "live"}, journal={"path": str(tmp / "journal.db"), "snapshot_s": 0.3},
                         broker={"kind": "ib", "ib_port": port, "ib_client_id": 21, "ib_contracts": {SYM: CONTRACT},
                                 "reconcile_s": 0.5, "connect_wait_s": 10, **broker})


def ib_lots(tws: FakeTwsOrders) -> int:
    """IB's net position in lots, from its executions."""
    net = sum(ex.qty if ex.order.action == "BUY" else -ex.qty for ex in tws.executions)
    return round(net / LOT)


def fill_open(tws: FakeTwsOrders, part: float = 1.0) -> int:
    """Fill `part` of every open order at its limit (or 60000), timed now; returns how many were filled."""
    n = 0
    for o in list(tws.orders.values()):
        if o.open:
            qty = round((o.qty - o.filled) * part / LOT) * LOT if part < 1 else o.qty - o.filled
            tws.fill(o.order_id, qty, float(o.lmt_price or 60000), time_s=int(time.time()))
            n += 1
    return n


@pytest.fixture
async def tws():
    server = FakeTwsOrders(contract_ids={"BTC": CON})
    await server.start()
    yield server
    await server.stop()


async def test_live_mode_trades_through_ib_and_reconciles(tmp_path: Path, tws: FakeTwsOrders) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=3) as md:
        settings = ib_live(tmp_path, md, tws.port)
        async with LiveHarness(md, settings) as h:
            await h.until(lambda: h.session.live_broker is not None and h.session.live_broker.last_result
                          is not None, what="the startup reconciliation")
            assert h.session.live_broker.last_result.ok, h.session.live_broker.last_result.discrepancies
            await h.settle(SYM)
            engine = h.session.path.engine
            for _ in range(300):
                if engine.counts["fills"] >= 3:
                    break
                await md.push(20)
                fill_open(tws, part=0.5)
                await asyncio.sleep(0.02)
            assert engine.counts["fills"] >= 3, "orders reached IB and filled"
            assert 1 <= h.session.service.stopwatch.stages["tick_to_order"].count <= engine.counts["orders"]
            assert tws.client_ids[-1] == 21
            portfolio = h.session.path.portfolio
            await h.until(lambda: portfolio.position(SYM) == ib_lots(tws), what="the last fills")
            await h.until(lambda: h.session.live_broker.reconciler.view is not None and
                          h.session.live_broker.last_result.report.get("kind") == "periodic", timeout=5,
                          what="a periodic reconciliation")
            assert h.session.live_broker.last_result.ok, h.session.live_broker.last_result.discrepancies
            lots = portfolio.position(SYM)
        fills = journal_fills(tmp_path / "journal.db")
        assert sum(q for _, q in fills) == lots == ib_lots(tws)
        assert len({t for t, _ in fills}) == len(fills) == len(tws.executions)


async def test_kill_9_then_restart_applies_the_missed_ib_fill_once(tmp_path: Path, tws: FakeTwsOrders) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=5) as md:
        settings = ib_live(tmp_path, md, tws.port)
        cfg = tmp_path / "live.toml"
        cfg.write_text(_toml(settings))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                    cwd=REPO, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            await md.push(20)
            await asyncio.sleep(0.03)
            if len(_safe_fills(jpath)) >= 2 and any(o.open for o in tws.orders.values()):
                break
            fill_open(tws, part=0.5)
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        before = _safe_fills(jpath)
        assert len(before) >= 2, "the daemon traded before it was killed"
        assert fill_open(tws) >= 1, "an order of the dead daemon fills at IB"

        async with LiveHarness(md, settings) as h:
            await h.until(lambda: h.session.live_broker is not None and h.session.live_broker.last_result
                          is not None, timeout=40, what="the startup reconciliation")
            result = h.session.live_broker.last_result
            assert result.ok, result.discrepancies
            assert h.session.path.portfolio.position(SYM) == ib_lots(tws), "the position equals IB's"
            assert not h.session.live_broker.gateway.open_orders(), "every order of the dead daemon is filled"
        fills = journal_fills(jpath)
        assert len({t for t, _ in fills}) == len(fills) == len(tws.executions), "each execution journaled once"
        assert sum(q for _, q in fills) == ib_lots(tws)


async def test_no_tws_stops_the_start_naming_the_endpoint(tmp_path: Path) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=3) as md:
        server = FakeTwsOrders()
        await server.start()
        port = server.port
        await server.stop()  # nothing listens there now
        session = LiveSession(ib_live(tmp_path, md, port, connect_wait_s=0.5))
        with pytest.raises(VenueError, match=rf"127.0.0.1:{port} \(client id 21\) within 0.5 s"):
            await session.run(asyncio.Event())


async def test_sigterm_cancels_the_orders_working_at_ib_and_exits_0(tmp_path: Path, tws: FakeTwsOrders) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=5) as md:
        cfg = tmp_path / "live.toml"
        cfg.write_text(_toml(ib_live(tmp_path, md, tws.port)))
        working: list[str] = []

        def orders_work() -> bool:
            working[:] = [o.order_ref for o in tws.orders.values() if o.open]
            return bool(working)

        code = await sigterm_once(cfg, md, orders_work, "the daemon's orders work at IB (the fake TWS fills nothing "
                                  "by itself)")
    assert code == 0
    assert not [o.order_ref for o in tws.orders.values() if o.open], "every order was cancelled at IB"
    assert all(tws.by_ref(ref).status == "Cancelled" for ref in working)
    assert journal_open_orders(jpath) == [], "the journal saw every cancel land before the exit"

