"""The service endpoints while a paced replay runs: /metrics scraped (series exist, parse, move, pass
promtool), /health and /ready, and /status, /kill and /resume behind the token."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import load_settings
from daemon.replay import Replay
from tests.conftest import REPO

TOKEN = "service-test-token-0123456789abcdef"
SAMPLE = REPO / "replay_data" / "sample.rec.zst"

EXPECTED = {
    "depthd_build_info", "depthd_book_state", "depthd_market_events", "depthd_level_updates", "depthd_orders",
    "depthd_fills", "depthd_risk_rejects", "depthd_broker_rejects", "depthd_order_cancels", "depthd_open_orders",
    "depthd_position", "depthd_position_notional", "depthd_pnl", "depthd_trading_state", "depthd_risk_triggers",
    "depthd_event_loop_lag_seconds", "depthd_feature_update_seconds", "depthd_score_seconds",
    "depthd_tick_to_order_seconds", "depthd_model_scores", "depthd_model_score_errors", "depthd_feature_psi",
    "depthd_model_info", "process_resident_memory_bytes",
}


def families(text: str) -> dict[str, dict[str, float]]:
    """name -> {sample name + labels: value}; raises on text that is not valid exposition format."""
    out: dict[str, dict[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = {f"{s.name}{sorted(s.labels.items())}": s.value for s in fam.samples}
    return out


def total(fams: dict[str, dict[str, float]], name: str, sample: str) -> float:
    return sum(v for k, v in fams[name].items() if k.startswith(sample + "["))


@pytest.fixture
def replay(monkeypatch: pytest.MonkeyPatch) -> Replay:
    monkeypatch.setenv("DEPTHD_CONTROL_TOKEN", TOKEN)
    settings = load_settings(REPO / "config.onnx.toml")
    settings = settings.model_copy(update={"control": settings.control.model_copy(update={"enabled": True,
                                                                                          "port": 0})})
    return Replay(settings, [str(SAMPLE)])


async def test_scrape_probe_kill_and_resume_a_paced_replay(replay: Replay, tmp_path: Path) -> None:
    task = asyncio.create_task(replay.run_async(speed=60))
    try:
        async with asyncio.timeout(10):
            while replay.control_url is None:
                await asyncio.sleep(0.01)
        base = replay.control_url
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/health") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            for _ in range(200):  # ready once the book is LIVE
                async with http.get(f"{base}/ready") as r:
                    ready = await r.json()
                    if r.status == 200:
                        break
                    assert r.status == 503 and ready["missing"]
                await asyncio.sleep(0.05)
            assert ready["ok"] and ready["books"] == {"SIMUSD": "LIVE"}

            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                first_text = await r.text()
            await asyncio.sleep(1.5)
            async with http.get(f"{base}/metrics") as r:
                second_text = await r.text()
            first, second = families(first_text), families(second_text)
            missing = EXPECTED - set(second)
            assert not missing, f"series missing from /metrics: {sorted(missing)}"
            for name, sample in (("depthd_market_events", "depthd_market_events_total"),
                                 ("depthd_feature_update_seconds", "depthd_feature_update_seconds_count"),
                                 ("depthd_score_seconds", "depthd_score_seconds_count"),
                                 ("depthd_event_loop_lag_seconds", "depthd_event_loop_lag_seconds_count")):
                assert total(second, name, sample) > total(first, name, sample), f"{sample} did not move"
            assert all("order_id" not in key and "client_id" not in key for fam in second.values() for key in fam)
            if shutil.which("promtool"):
                lint = subprocess.run(["promtool", "check", "metrics"], input=second_text, text=True,
                                      capture_output=True, timeout=30)
                assert lint.returncode == 0, lint.stdout + lint.stderr
            (tmp_path / "scrape.txt").write_text(second_text)

            async with http.post(f"{base}/kill") as r:
                assert r.status == 401
            async with http.post(f"{base}/kill", headers={"Authorization": "Bearer wrong-token-0123456789"}) as r:
                assert r.status == 401
            async with http.get(f"{base}/status") as r:
                assert r.status == 401, "status is for operators: it needs the token"
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(f"{base}/kill", headers=auth, json={"reason": "test", "operator": "ci"}) as r:
                assert r.status == 200 and (await r.json())["state"] == "HALTED"
            async with http.get(f"{base}/status", headers=auth) as r:
                status = await r.json()
            assert status["state"] == "HALTED" and status["ready"] is True and status["healthy"] is True
            assert {"positions", "pnl", "open_orders", "orders", "model", "feeds", "risk"} <= set(status)
            assert status["model"]["sha256"] and status["model"]["scored"] > 0
            async with http.post(f"{base}/resume", headers=auth, json={"operator": "ci"}) as r:
                assert r.status == 200 and (await r.json())["state"] == "ACTIVE"
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert replay.service is not None and replay.service.server is not None


async def test_a_live_session_without_its_token_stops_before_the_venue_and_releases_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.errors import ConfigError
    from daemon.journal import Journal
    from daemon.live import LiveSession
    from tests.live_harness import live_settings

    monkeypatch.delenv("DEPTHD_CONTROL_TOKEN", raising=False)
    settings = live_settings(tmp_path, "binance", ["BTCUSDT"], "ws://127.0.0.1:9", "http://127.0.0.1:9",
                             control={"enabled": True, "port": 0}, journal={"path": str(tmp_path / "j.db")})
    session = LiveSession(settings)
    with pytest.raises(ConfigError, match="DEPTHD_CONTROL_TOKEN"):
        await session.run(asyncio.Event())
    Journal.open(tmp_path / "j.db").close()  # the lock was released: a restart can open it
