"""`depthd record` and `depthd run` as processes against a fake Binance on loopback, and `depthd replay`
of what was recorded."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from daemon.sources import RecordingReader
from tests.conftest import REPO
from tests.fakes.binance_venue import FakeBinance

SYM = "BTCUSDT"


def write_config(path: Path, tmp: Path, ws_url: str, rest_url: str, mode: str = "paper") -> Path:
    path.write_text(f"""
[daemon]
mode = "{mode}"
instance = "clitest"
log_level = "warning"

[instruments.{SYM}]
tick_size = 0.01
lot_size = 0.00001

[features]
sample_interval_ms = 50

[strategy.params]
threshold = 0.05
persistence_ms = 0
max_position = 0.01
position_step = 0.001

[risk]
halt_file = "{tmp / 'halt.json'}"
max_notional = 1e9
max_order_notional = 1e9

[risk.triggers.book_invalid_ms]
threshold = 60000          # a loaded CI machine may take seconds to start the process

[risk.triggers.feed_stale_ms]
threshold = 60000

[feed]
venue = "binance"
symbols = ["{SYM}"]
ws_url = "{ws_url}"
rest_url = "{rest_url}"
reconnect_initial_s = 0.05
reconnect_max_s = 0.2

[record]
dir = "{tmp / 'rec'}"
""")
    return path


async def run_cli(fake: FakeBinance, *args: str, pushes: int = 30) -> tuple[int, str, str]:
    """Run `depthd ARGS` while the fake streams events; return (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", *args, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    for _ in range(pushes):
        await fake.push(20)
        await asyncio.sleep(0.1)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_record_then_replay_the_recording(tmp_path: Path) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=9) as fake:
        cfg = write_config(tmp_path / "live.toml", tmp_path, fake.ws_url, fake.rest_url)
        code, out, err = await run_cli(fake, "record", "--config", str(cfg), "--duration", "3")
    assert code == 0, err
    assert "recorded" in err and "0 write error(s)" in err, err
    assert all(json.loads(line)["event"] for line in out.splitlines()), "stdout is JSON log lines only"
    files = sorted((tmp_path / "rec").glob("*.rec.zst"))
    assert len(files) == 1
    reader = RecordingReader(files[0])
    assert (reader.venue, reader.symbols) == ("binance", [SYM])
    channels = {r.channel for r in reader}
    assert {"marker", "snapshot", "ws"} <= channels

    replay_cfg = write_config(tmp_path / "replay.toml", tmp_path, fake.ws_url, fake.rest_url, mode="replay")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "daemon", "replay", str(files[0]), "--config", str(replay_cfg), "--report",
        str(tmp_path / "out"), cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err_b = await proc.communicate()
    assert proc.returncode == 0, err_b.decode()
    assert (tmp_path / "out" / "report.json").is_file()


async def test_run_trades_paper_on_the_live_feed_and_stops_cleanly(tmp_path: Path) -> None:
    async with FakeBinance("spot", [SYM], source="synthetic", seed=9) as fake:
        cfg = write_config(tmp_path / "live.toml", tmp_path, fake.ws_url, fake.rest_url)
        code, _out, err = await run_cli(fake, "run", "--config", str(cfg), "--duration", "5", pushes=50)
    assert code == 0, err
    assert "feed binance:" in err and "BTCUSDT: LIVE" in err, err
    assert "trading state ACTIVE" in err


async def test_run_refuses_live_mode_and_a_feed_without_symbols(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "live.toml", tmp_path, "ws://127.0.0.1:9", "http://127.0.0.1:9", mode="live")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "daemon", "run", "--config", str(cfg),
                                                cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 3 and "daemon.mode" in err.decode()
