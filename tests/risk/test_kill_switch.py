"""The kill switch end to end: `depthd kill` against a running daemon on loopback cancels its resting
paper orders and halts it; the halt is persisted, and a restarted daemon comes up HALTED."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.cli import EXIT_CONTROL, main

REPO = Path(__file__).resolve().parents[2]
TOKEN = "k" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("session") / "s.rec.zst"
    subprocess.run([sys.executable, str(REPO / "replay_data" / "make_sample.py"), "--minutes", "3", "--out",
                    str(out)], check=True, capture_output=True)
    return out


def write_config(tmp: Path, port: int) -> tuple[Path, Path]:
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    text = (REPO / "config.toml").read_text()
    for old, new in (('order_type = "market"', 'order_type = "limit"'),
                     ('halt_file = ""', f'halt_file = "{tmp / "halt.json"}"'),
                     ("enabled = false\nhost", "enabled = true\nhost"),
                     ("port = 8787", f"port = {port}"),
                     ('token_env = "DEPTHD_CONTROL_TOKEN"', 'token_env = "DEPTHD_TEST_NO_SUCH_VARIABLE"'),
                     ('token_file = ""', f'token_file = "{token_file}"')):
        assert old in text, old
        text = text.replace(old, new, 1)
    cfg = tmp / "config.toml"
    cfg.write_text(text)
    return cfg, token_file


def control(action: str, url: str, token_file: Path, *extra: str) -> int:
    who = ["--operator", "tester"] if action != "status" else []
    return main([action, "--url", url, "--token-file", str(token_file), *who, *extra])


def status(url: str, token_file: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert control("status", url, token_file) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_kill_through_the_cli_halts_a_running_daemon_and_cancels_its_resting_orders(
        session: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg, token_file = write_config(tmp_path, port)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "replay", str(session), "--config", str(cfg),
                             "--speed", "20", "--quiet", "--report", str(tmp_path / "out")],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        answer: dict = {}
        while time.monotonic() < deadline:  # until a kill finds an order resting (the strategy re-quotes)
            if proc.poll() is not None:
                pytest.fail(f"daemon exited early: {proc.stderr.read().decode()[-2000:]}")
            if control("status", url, token_file) != 0:
                capsys.readouterr()
                time.sleep(0.1)
                continue
            st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            if st["open_orders"] == 0:
                time.sleep(0.05)
                continue
            assert control("kill", url, token_file, "--reason", "test kill") == 0
            answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert answer["state"] == "HALTED"
            if answer["cancelled"] > 0:
                break
            assert control("resume", url, token_file, "--reason", "no order was resting; again") == 0
            capsys.readouterr()
        assert answer.get("cancelled", 0) > 0, f"never caught an order resting: {answer}"

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = status(url, token_file, capsys)
            if st["open_orders"] == 0:
                break
            time.sleep(0.05)
        assert st["state"] == "HALTED" and st["open_orders"] == 0
        assert json.loads((tmp_path / "halt.json").read_text())["by"] == "operator:tester"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    risk = report["risk"]
    assert risk["state"] == "HALTED"
    halt = [t for t in risk["transitions"] if t["new"] == "HALTED"][-1]
    assert halt["by"] == "operator:tester" and halt["reason"] == "test kill"
    assert risk["halt_cancels"] >= 1
    assert report["rejects"].get("halted", 0) >= 0
    assert all(f["ts"] <= halt["ts"] + 1_000_000 for f in report["fills"])  # nothing new traded after the halt

    # restart with the same halt file: the daemon comes up HALTED and sends nothing
    assert main(["replay", str(session), "--config", str(cfg), "--quiet", "--report", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["risk"]["state"] == "HALTED"
    assert again["risk"]["transitions"][0]["by"] == "startup"
    assert again["orders"] == 0 and again["fills_total"] == 0


def test_kill_without_a_daemon_is_a_clear_control_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)

    code = control("kill", f"http://127.0.0.1:{free_port()}", token_file)

    assert code == EXIT_CONTROL
    assert "no daemon listening" in capsys.readouterr().err
