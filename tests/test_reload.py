"""SIGHUP reload: risk limits and the log level apply at once; other changes wait for a restart; a broken
config changes nothing."""

from __future__ import annotations

from pathlib import Path

from daemon.app import build_path
from daemon.clock import ReplayClock
from daemon.config import load_settings
from daemon.logs import current_level, set_level
from daemon.reload import Reloader
from tests.conftest import REPO


def setup(tmp_path: Path) -> tuple[Path, Reloader]:
    cfg = tmp_path / "c.toml"
    cfg.write_text((REPO / "config.toml").read_text())
    settings = load_settings(cfg)
    path = build_path(settings, ReplayClock(), ["SIMUSD"])
    return cfg, Reloader(cfg, settings, path)


def test_risk_and_log_level_apply_other_sections_wait_for_a_restart(tmp_path: Path) -> None:
    cfg, rel = setup(tmp_path)
    before = rel.path.risk.limits("SIMUSD").max_position
    text = cfg.read_text()
    sym = "[risk.symbols.SIMUSD]\nmax_position = 1.0"
    assert sym in text and 'log_level = "info"' in text and "sample_interval_ms = 100 " in text
    cfg.write_text(text.replace(sym, "[risk.symbols.SIMUSD]\nmax_position = 0.5").replace(
        'log_level = "info"', 'log_level = "warning"').replace("sample_interval_ms = 100 ", "sample_interval_ms = 50 "))
    try:
        result = rel.reload()
        assert result.ok and result.applied == ["risk", "daemon.log_level"] and result.needs_restart == ["features"]
        assert rel.path.risk.limits("SIMUSD").max_position == before // 2
        assert rel.path.monitor.settings.symbols["SIMUSD"].max_position == 0.5 and current_level() == "warning"
        assert rel.settings.features.sample_interval_ms == 100, "a section that needs a restart stays as it was"
    finally:
        set_level("info")


def test_a_broken_config_changes_nothing(tmp_path: Path) -> None:
    cfg, rel = setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("max_position = 1.0         # worst", "max_position = -3 # worst"))
    result = rel.reload()
    assert not result.ok and "max_position" in result.error and rel.failures == 1
    assert rel.path.risk.limits("SIMUSD").max_position > 0
