"""A paper-trading live session with a journal: everything it trades is journaled, and a restart (also
after kill -9) comes back with the same positions, new client ids, and nothing applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from daemon.journal import Journal
from tests.conftest import REPO
from tests.fakes.binance_venue import FakeBinance
from tests.live_harness import LiveHarness, live_settings
from tests.test_cli_live import write_config

SYM = "BTCUSDT"


async def trade_a_while(fake: FakeBinance, h: LiveHarness, until_fills: int = 3) -> None:
    await h.settle(SYM)
    for _ in range(200):
        if h.session.path.engine.counts["fills"] >= until_fills:
            return
        await fake.push(20)
        await asyncio.sleep(0.02)
    raise AssertionError("the strategy never traded")


async def test_a_restart_recovers_positions_and_never_reuses_a_client_id(tmp_path: Path) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=3) as fake:
        settings = live_settings(tmp_path, "binance", [SYM], fake.ws_url, fake.rest_url,
                                 journal={"path": str(jpath), "snapshot_s": 0.2})
        async with LiveHarness(fake, settings) as h:
            await trade_a_while(fake, h)
            first_ids = {i.symbol for i, _ in h.submitted}
            lots = h.session.path.portfolio.position(SYM)
            fills = list(h.session.path.engine.fills)
        assert first_ids == {SYM}
        async with LiveHarness(fake, settings) as h2:
            report = h2.session.recovery_report
            assert report["positions"] == {SYM: lots}
            assert h2.session.path.portfolio.position(SYM) == lots
            await trade_a_while(fake, h2, until_fills=2)
            new_ids = {f.client_id for f in h2.session.path.engine.fills}
    old_ids = {f.client_id for f in fills}
    assert old_ids and new_ids and not old_ids & new_ids, "client ids are unique across restarts"
    j = Journal.open(jpath)
    assert j.recovery.last_boot is not None and len({f.client_id for f in fills}) == len(old_ids)
    j.close()


async def test_kill_9_mid_session_loses_no_fill_and_applies_none_twice(tmp_path: Path) -> None:
    jpath = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=7) as fake:
        cfg = write_config(tmp_path / "live.toml", tmp_path, fake.ws_url, fake.rest_url)
        cfg.write_text(cfg.read_text() + f'\n[journal]\npath = "{jpath}"\nsnapshot_s = 0.3\n')
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                    cwd=REPO, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        fills: list = []
        deadline = asyncio.get_running_loop().time() + 60  # a loaded machine starts the process slowly
        while asyncio.get_running_loop().time() < deadline:
            await fake.push(20)
            await asyncio.sleep(0.03)
            if jpath.exists() and len(fills := _peek(jpath)) >= 3:
                break
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        assert len(fills) >= 3, "the daemon traded before it was killed"

        every = _all_fills(jpath)
        trade_ids = [t for t, _ in every]
        assert len(trade_ids) == len(set(trade_ids)), "no fill journaled twice"
        settings = live_settings(tmp_path, "binance", [SYM], fake.ws_url, fake.rest_url,
                                 journal={"path": str(jpath)})
        async with LiveHarness(fake, settings) as h:
            net = sum(signed for _, signed in every)  # every journaled fill, from a flat start
            assert h.session.path.portfolio.position(SYM) == net
            assert h.session.recovery_report["positions"] == {SYM: net}

def _all_fills(path: Path) -> list[tuple[str, int]]:
    """(trade id, signed lots) of every fill the journal holds."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT trade_id, side, qty FROM fills ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(t, side * qty) for t, side, qty in rows]


def _peek(path: Path) -> list:
    """The fills a running daemon has journaled so far (read-only, beside its writer lock)."""
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT * FROM fills").fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()
