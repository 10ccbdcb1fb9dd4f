"""`depthd run` as systemd runs it: READY=1 once ready, WATCHDOG=1 from the loop, SIGHUP reloads the risk
limits and the log level, and SIGTERM with resting paper orders cancels them, flushes the journal, says
STOPPING=1 and exits 0 well within the stop timeout."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

from tests.conftest import REPO
from tests.fakes.binance_venue import FakeBinance
from tests.ops.notify_socket import NotifySocket
from tests.test_cli_live import SYM, write_config

STOP_TIMEOUT_S = 20  # systemd's TimeoutStopSec in the shipped unit is 45 s


def paper_service_config(tmp: Path, ws_url: str, rest_url: str, max_position: str = "1.0") -> Path:
    cfg = write_config(tmp / "run.toml", tmp, ws_url, rest_url)
    text = cfg.read_text().replace('log_level = "warning"', 'log_level = "info"')
    text = text.replace("[risk]\n", f"[risk]\nmax_position = {max_position}\nmax_order_qty = 0.5\n")
    cfg.write_text(text + f"""
[execution]
order_type = "limit"

[journal]
path = "{tmp / 'journal.db'}"
snapshot_s = 1.0

[paper]
latency_us = 1500000       # an order (and its cancel) takes 1.5 s to reach the paper book: it rests meanwhile
""")
    return cfg


def open_in_journal(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return con.execute("SELECT client_id, state FROM orders WHERE state IN ('PENDING_NEW', 'NEW', "
                               "'PARTIALLY_FILLED', 'PENDING_CANCEL')").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def states(path: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT state, COUNT(*) FROM orders GROUP BY state").fetchall())
    finally:
        con.close()


async def test_notify_reload_and_a_clean_stop_with_resting_orders(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    journal = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=9) as fake:
        cfg = paper_service_config(tmp_path, fake.ws_url, fake.rest_url)
        env = {**os.environ, "NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "1000000"}
        out_f, err_f = (tmp_path / "stdout").open("wb"), (tmp_path / "stderr").open("wb")  # never a full pipe
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                    cwd=REPO, env=env, stdout=out_f, stderr=err_f)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not sock.messages("READY=1"):
                await fake.push(20)
                await asyncio.sleep(0.05)
            assert sock.messages("READY=1"), "READY=1 once the feed is connected and the book LIVE"
            for _ in range(30):
                await fake.push(20)
                await asyncio.sleep(0.05)
            pings = sock.messages("WATCHDOG=1")
            assert len(pings) >= 2 and max(b - a for a, b in itertools.pairwise(pings)) < 1.0

            cfg.write_text(cfg.read_text().replace("max_position = 1.0", "max_position = 0.5")
                           .replace('log_level = "info"', 'log_level = "debug"').replace(
                               "sample_interval_ms = 50", "sample_interval_ms = 60"))
            proc.send_signal(signal.SIGHUP)
            while time.monotonic() < deadline and b"config_reloaded" not in (tmp_path / "stdout").read_bytes():
                await fake.push(20)
                await asyncio.sleep(0.05)
            while time.monotonic() < deadline and not open_in_journal(journal):
                await fake.push(20)
                await asyncio.sleep(0.02)
            assert open_in_journal(journal), "the strategy's limit orders rest in the paper book"

            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while proc.returncode is None and time.monotonic() - sent < STOP_TIMEOUT_S:
                await fake.push(5)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.1)
            took = time.monotonic() - sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            out_f.close()
            err_f.close()
    out, err = (tmp_path / "stdout").read_bytes(), (tmp_path / "stderr").read_bytes()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert took < STOP_TIMEOUT_S
    assert sock.messages("STOPPING=1"), "STOPPING=1 on the way down"
    lines = [json.loads(x) for x in out.decode().splitlines()]
    reload = [x for x in lines if x["event"] == "config_reloaded"]
    assert reload and reload[0]["applied"] == ["risk", "daemon.log_level"] and reload[0]["needs_restart"] == \
        ["features"], reload
    assert any(x["level"] == "debug" for x in lines), "the new log level is in force after the reload"
    [wind] = [x for x in lines if x["event"] == "wind_down"]
    assert wind["open_at_stop"] >= 1 and wind["left_open"] == [], wind
    assert open_in_journal(journal) == [], "every resting order was cancelled and journaled before the exit"
    assert set(states(journal)) <= {"FILLED", "CANCELED"}, "each order ended: cancelled, or filled before its cancel"
    assert "trading state ACTIVE" in err.decode()
    sock.close()
