"""`depthd run` (paper) as systemd runs it: READY=1 once ready and WATCHDOG=1 from the loop; scraped,
probed, killed and resumed over HTTP; SIGHUP reloads the risk limits and the log level; and SIGTERM with
resting paper orders cancels them, flushes the journal, says STOPPING=1 and exits 0 well within the stop
timeout."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import REPO
from tests.fakes.binance_venue import FakeBinance
from tests.ops.notify_socket import NotifySocket
from tests.test_cli_live import SYM, write_config

TOKEN = "shutdown-test-token-0123456789abcdef"
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
    port = free_port()
    cfg.write_text(cfg.read_text() + f"""
[control]
enabled = true
port = {port}
""")
    return cfg


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def control_url(cfg: Path) -> str:
    return "http://127.0.0.1:" + cfg.read_text().split("[control]")[1].split("port = ")[1].split()[0]


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


async def test_a_paper_service_is_probed_killed_resumed_reloaded_and_stopped_cleanly(tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path / "notify")
    journal = tmp_path / "journal.db"
    async with FakeBinance("spot", [SYM], source="synthetic", seed=9) as fake:
        cfg = paper_service_config(tmp_path, fake.ws_url, fake.rest_url)
        env = {**os.environ, "NOTIFY_SOCKET": sock.name, "WATCHDOG_USEC": "1000000", "DEPTHD_CONTROL_TOKEN": TOKEN}
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
            await scrape_probe_kill_resume(control_url(cfg))

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


async def scrape_probe_kill_resume(base: str) -> None:
    """The paper session as ops see it: scraped, probed, killed and resumed over HTTP."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
        assert r.status == 200 and 'depthd_feed_connected{venue="binance"} 1.0' in text
        assert 'depthd_build_info{mode="paper"' in text and "depthd_journal_write_seconds_bucket" in text
        assert 'depthd_config_reloads_total{result="failed"} 0.0' in text
        for probe in ("health", "ready"):
            async with http.get(f"{base}/{probe}") as r:
                assert r.status == 200, await r.text()
        async with http.post(f"{base}/kill", headers={"Authorization": "Bearer not-the-token-000000"}) as r:
            assert r.status == 401
        async with http.post(f"{base}/kill", headers=auth, json={"reason": "ops drill"}) as r:
            assert r.status == 200 and (await r.json())["state"] == "HALTED"
        async with http.post(f"{base}/resume", headers=auth, json={"reason": "drill over"}) as r:
            assert r.status == 200 and (await r.json())["state"] == "ACTIVE"
