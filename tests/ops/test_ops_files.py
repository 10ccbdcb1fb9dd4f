"""The shipped ops files: alert rules (promtool check + unit tests), the Grafana dashboard (valid, every
series it draws is one depthd exports), the systemd units (systemd-analyze verify, hardened: security
rated OK or better)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from daemon.config import load_settings
from daemon.journal import Journal
from daemon.latency import Stopwatch
from daemon.loop_monitor import LoopMonitor
from daemon.metrics import PathCollector
from daemon.metrics_feed import FeedCollector
from daemon.metrics_ops import OpsCollector
from daemon.replay import Replay
from daemon.sources.recorder import Recorder
from daemon.venues.health import FeedHealth
from tests.conftest import REPO

OPS = REPO / "ops"
UNITS = [REPO / "systemd" / "depthd.service", REPO / "systemd" / "depthd@.service"]
_SERIES = re.compile(r"\b((?:depthd|process)_[a-z_]+)")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (.ci/run installs it from Debian's packages; here it was not found)")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a replay path with model, journal, feed health and recorder exports."""
    tmp = tmp_path_factory.mktemp("metrics")
    replay = Replay(load_settings(REPO / "config.onnx.toml"), [str(REPO / "replay_data" / "sample.rec.zst")])
    replay.run()
    path = replay.path
    health = FeedHealth("binance", live=True)
    health.symbol("SIMUSD")
    path.monitor.skew_ns["SIMUSD"] = 1_000_000
    risk = path.monitor.settings  # a daily loss limit, as a live config has
    dl = risk.triggers.daily_loss.model_copy(update={"threshold": 1000.0})
    path.monitor.settings = risk.model_copy(update={"triggers": risk.triggers.model_copy(update={"daily_loss": dl})})
    journal = Journal.open(tmp / "j.db")
    recorder = Recorder(tmp / "rec", "binance", ["SIMUSD"])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PathCollector(path))
    reg.register(OpsCollector(path, "replay", LoopMonitor(), Stopwatch(lambda: 0), journal))
    reg.register(FeedCollector(path, [health], recorder))
    from prometheus_client.process_collector import ProcessCollector

    ProcessCollector(registry=reg)
    text = generate_latest(reg).decode()
    recorder.close()
    journal.close()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for family in re.findall(r"^# TYPE (\S+) \w+$", text, re.M):  # families with no sample yet
        names |= {family + x for x in ("", "_bucket", "_count", "_sum")}
    return names


def _names(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in _SERIES.findall(e)}


def test_alert_rules_check_and_their_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    for args in (["check", "rules", str(OPS / "prometheus" / "depthd-alerts.yml")],
                 ["test", "rules", str(OPS / "prometheus" / "depthd-alerts.test.yml")]):
        run = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr


def test_alert_rules_cover_what_ops_asked_for_and_name_real_series(exported: set[str]) -> None:
    text = (OPS / "prometheus" / "depthd-alerts.yml").read_text()  # promtool checks the YAML; names and exprs here
    names = set(re.findall(r"^\s*- alert: (\w+)$", text, re.M))
    exprs = re.findall(r"^\s*expr: (.+)$", text, re.M)
    assert {"DepthdFeedDown", "DepthdBookInvalid", "DepthdHalted", "DepthdLossLimitNear", "DepthdScoreErrors",
            "DepthdFeatureDrift", "DepthdEventLoopLag"} <= names and len(exprs) == len(names)
    unknown = {n for n in _names(exprs) if n not in exported and n + "_total" not in exported}
    assert not unknown, f"alert rules use series depthd does not export: {sorted(unknown)}"


def test_dashboard_is_valid_and_draws_only_exported_series(exported: set[str]) -> None:
    dash = json.loads((OPS / "grafana" / "depthd-dashboard.json").read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert dash["uid"] and len(panels) >= 20 and len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    names = _names(exprs)
    unknown = {n for n in names if n not in exported}
    assert not unknown, f"dashboard panels use series depthd does not export: {sorted(unknown)}"
    for want in ("depthd_trading_state", "depthd_pnl", "depthd_feed_connected", "depthd_event_loop_lag_seconds_bucket",
                 "depthd_tick_to_order_seconds_bucket", "depthd_feature_psi", "process_resident_memory_bytes"):
        assert want in names, f"the dashboard shows no {want}"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_verify_and_are_hardened(unit: Path, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    text = unit.read_text()
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "StartLimitBurst=", "TimeoutStopSec=",
                "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "DynamicUser=yes",
                "CapabilityBoundingSet=\n", "RestrictAddressFamilies=", "SystemCallFilter=", "MemoryMax=",
                "ReadWritePaths=", "EnvironmentFile=", "LoadCredential="):
        assert key in text, f"{unit.name}: no {key.strip()}"
    # verify against this checkout's executable (the unit names /opt/depthd, where the README installs it)
    name = "depthd@ci.service" if "@" in unit.name else unit.name
    local = tmp_path / name
    local.write_text(text.replace("/opt/depthd/.venv/bin/depthd", str(REPO / ".venv" / "bin" / "depthd")))
    verify = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    sec = subprocess.run([analyze, "security", "--offline=yes", str(local)], capture_output=True, text=True,
                         timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", sec.stdout)
    assert m, sec.stdout[-500:] + sec.stderr
    assert m.group(2) in ("OK", "SAFE") and float(m.group(1)) < 4.0, m.group(0)
