"""`depthd run` in live mode: market data from a fake Binance, orders through the real ccxt client to a
fake Binance exchange, a journal, reconciliation on start; and kill -9 of the running daemon followed by
a restart: no fill lost or applied twice, the position equal to what the venue holds, orphans handled."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fakes.binance_exchange import FakeBinanceExchange
from tests.fakes.binance_venue import FakeBinance
from tests.live_harness import LiveHarness, live_settings

SYM = "BTCUSDT"


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"DEPTHD_BINANCE_API_KEY": "fake-api-key", "DEPTHD_BINANCE_API_SECRET": "fake-secret"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def live_mode(tmp: Path, md: FakeBinance, ex: FakeBinanceExchange, **broker: object) -> object:
    return live_settings(tmp, "binance", [SYM], md.ws_url, md.rest_url,
                         daemon={"mode": "live"}, journal={"path": str(tmp / "journal.db"), "snapshot_s": 0.3},
                         broker={"kind": "ccxt", "exchange": "binance", "rest_url": ex.rest_url, "ws_url": ex.ws_url,
                                 "reconcile_s": 0.5, "poll_s": 0.3, **broker},
                         paper={"latency_us": 0})


def journal_fills(path: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT trade_id, side * qty FROM fills ORDER BY seq").fetchall()
    finally:
        con.close()


def venue_lots(ex: FakeBinanceExchange, start_btc: Decimal) -> int:
    free, locked = ex.balance("BTC")
    return int((Decimal(free) + Decimal(locked) - start_btc) / Decimal("0.00001"))


async def test_live_mode_trades_through_ccxt_and_reconciles_on_start(tmp_path: Path, creds: dict) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=3) as md, \
            FakeBinanceExchange(balances={"USDT": "100000", "BTC": "1"}, fee_rate="0") as ex:
        ex.set_price(SYM, "60000")
        settings = live_mode(tmp_path, md, ex)
        async with LiveHarness(md, settings) as h:
            await h.settle(SYM)
            for _ in range(300):
                if h.session.path.engine.counts["fills"] >= 2:
                    break
                await md.push(20)
                await asyncio.sleep(0.02)
            assert h.session.path.engine.counts["fills"] >= 2, "orders reached the venue and filled"
            assert h.session.live_broker.last_result.ok
            sent = h.session.service.stopwatch.stages["tick_to_order"]
            assert sent.count >= 1 and sent.quantile_s(0.5) < 1.0, "tick-to-order timed as each create leaves"
            portfolio, broker = h.session.path.portfolio, h.session.live_broker.gateway
            h.session.path.state.operator_halt("test over", "test")  # no new orders; open ones cancelled
            await h.until(lambda: not broker.open_orders() and portfolio.position(SYM) == venue_lots(ex, Decimal("1")),
                          what="the cancels and the last fills")
            lots = portfolio.position(SYM)
        fills = journal_fills(tmp_path / "journal.db")
        assert sum(q for _, q in fills) == lots and len({t for t, _ in fills}) == len(fills), (fills, lots)


async def test_kill_9_then_restart_loses_no_fill_and_handles_orphans(tmp_path: Path, creds: dict) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=5) as md, \
            FakeBinanceExchange(balances={"USDT": "100000", "BTC": "1"}, fee_rate="0") as ex:
        ex.set_price(SYM, "60000")
        settings = live_mode(tmp_path, md, ex, cancel_orphans=True)
        cfg = tmp_path / "live.toml"
        cfg.write_text(_toml(settings))
        env = {**os.environ, **creds}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                    cwd=REPO, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            await md.push(20)
            await asyncio.sleep(0.03)
            if jpath.exists() and len(_safe_fills(jpath)) >= 3:
                break
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        assert len(_safe_fills(jpath)) >= 3, "the daemon traded before it was killed"
        ex.place(SYM, "BUY", "0.001", "10000", "someone-else-1")  # an order this daemon never sent

        async with LiveHarness(md, settings) as h:
            await h.until(lambda: h.session.live_broker.last_result is not None, timeout=40,
                          what="the startup reconciliation (it waits out a late create)")
            result = h.session.live_broker.last_result
            assert result.ok, result.discrepancies
            assert ex.order("someone-else-1").status == "CANCELED", "the orphan was cancelled, as configured"
            lots = h.session.path.portfolio.position(SYM)
            assert lots == venue_lots(ex, Decimal("1")), "the position equals what the venue holds"
        fills = journal_fills(jpath)
        assert len({t for t, _ in fills}) == len(fills), "no fill journaled twice"
        assert sum(q for _, q in fills) == venue_lots(ex, Decimal("1"))


def _safe_fills(path: Path) -> list:
    try:
        return journal_fills(path)
    except sqlite3.Error:
        return []


def _toml(settings: object) -> str:
    """The settings as a config file for the daemon process."""
    import tomllib  # noqa: F401  (the daemon reads it back with tomllib)

    data = settings.model_dump(exclude_defaults=False)  # type: ignore[attr-defined]
    return _dump(data)


def _dump(data: dict, prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in data.items():
        qkey = f'"{key}"' if not key.replace("_", "").isalnum() else key
        if isinstance(value, dict):
            tables.append((qkey, value))
        elif value is None:
            continue
        else:
            scalars.append(f"{qkey} = {_value(value)}")
    out = ""
    if scalars:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(scalars) + "\n\n"
    for key, value in tables:
        out += _dump(value, f"{prefix}.{key}" if prefix else key)
    return out


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


async def test_base_asset_fees_do_not_break_the_spot_balance_check(tmp_path: Path, creds: dict) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=3) as md, \
            FakeBinanceExchange(balances={"USDT": "100000", "BTC": "1"}, fee_rate="0.001") as ex:
        ex.set_price(SYM, "60000")
        async with LiveHarness(md, live_mode(tmp_path, md, ex)) as h:
            await h.settle(SYM)
            engine = h.session.path.engine
            for _ in range(300):
                if engine.counts["fills"] >= 4 and h.session.path.portfolio.position(SYM) > 0:
                    break
                await md.push(20)
                await asyncio.sleep(0.02)
            assert engine.counts["fills"] >= 4
            assert any(t.commission_asset == "BTC" and t.commission > 0 for t in ex.trades), "a buy paid its fee in BTC"
            passes = len(journal_reports(tmp_path / "journal.db"))
            await h.until(lambda: len(journal_reports(tmp_path / "journal.db")) >= passes + 2, timeout=10,
                          what="two periodic reconciliations after the fills")
            reports = journal_reports(tmp_path / "journal.db")
            assert all(r["ok"] for r in reports), [r["discrepancies"] for r in reports if not r["ok"]]
            assert str(h.session.path.state.state) == "ACTIVE"


def journal_reports(path: Path) -> list[dict]:
    import json

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(r) for (r,) in con.execute("SELECT report FROM reconciliations ORDER BY seq")]
    except sqlite3.Error:
        return []
    finally:
        con.close()


async def test_sigterm_cancels_the_orders_resting_at_the_venue_and_exits_0(tmp_path: Path, creds: dict) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=5) as md, \
            FakeBinanceExchange(balances={"USDT": "100000", "BTC": "1"}, fee_rate="0") as ex:
        ex.set_price(SYM, "60000")
        settings = live_mode(tmp_path, md, ex)
        settings = settings.model_copy(update={"execution": settings.execution.model_copy(
            update={"order_type": "limit"})})  # limit orders at the touch rest at the fake venue
        cfg = tmp_path / "live.toml"
        cfg.write_text(_toml(settings))
        resting: list[str] = []

        def orders_rest() -> bool:
            resting[:] = [o.client_id for o in ex.orders if o.is_open]
            return bool(resting)

        code = await sigterm_once(cfg, md, orders_rest, "the daemon's limit orders rest at the venue", creds)
        assert code == 0
        assert not [o.client_id for o in ex.orders if o.is_open], "every order was cancelled at the venue"
        assert all(ex.order(cid).status in ("CANCELED", "FILLED") for cid in resting)
    assert journal_open_orders(jpath) == [], "the journal saw every cancel land before the exit"


def journal_open_orders(path: Path) -> list[str]:
    """Client ids of the orders the journal does not have in a final state."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [cid for (cid,) in con.execute("SELECT client_id FROM orders WHERE state NOT IN ('CANCELED', "
                                              "'FILLED', 'REJECTED', 'EXPIRED')")]
    finally:
        con.close()


async def sigterm_once(cfg: Path, md: FakeBinance, ready: Callable[[], bool], what: str,
                       env: dict[str, str] | None = None) -> int:
    """Run `depthd run` on `cfg`, feed it market data until `ready()`, send SIGTERM; its exit code."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                cwd=REPO, env={**os.environ, **(env or {})},
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline and not ready():
            await md.push(20)
            await asyncio.sleep(0.03)
        assert ready(), what
        proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
