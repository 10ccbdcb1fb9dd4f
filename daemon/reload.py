"""SIGHUP: re-read the config file and apply the parts that can change safely while trading.

Applied: `[risk]` (limits, triggers, halt behaviour: the gate's limits and the monitor's triggers take the
new values; order-rate windows carry over) and `[daemon] log_level`. Any other section that changed is
reported as needing a restart and left as it was. A config that does not load or validate changes
nothing: the error is logged with the file and key, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog

from daemon.app import TradingPath
from daemon.config import Settings, load_settings
from daemon.errors import ConfigError
from daemon.logs import set_level

log = structlog.get_logger("depthd.reload")


@dataclass
class ReloadResult:
    """What a reload did: `applied` and `needs_restart` name config sections; `error` when nothing changed."""

    ok: bool
    applied: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    error: str = ""


class Reloader:
    """Applies a re-read config to a running session; keeps the settings in force."""

    def __init__(self, config_path: str | Path, settings: Settings, path: TradingPath) -> None:
        self.config_path = Path(config_path)
        self.settings = settings
        self.path = path
        self.reloads = 0
        self.failures = 0

    def reload(self) -> ReloadResult:
        """Read the file again and apply what can change safely; say what was applied and what was not."""
        self.reloads += 1
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            self.failures += 1
            log.error("reload_failed", config=str(self.config_path), error=str(exc))
            return ReloadResult(False, error=str(exc))
        try:
            return self._apply(new)
        except Exception as exc:  # from a signal handler: report, keep running on what was applied
            self.failures += 1
            log.exception("reload_failed", config=str(self.config_path))
            return ReloadResult(False, error=f"{type(exc).__name__}: {exc}")

    def _apply(self, new: Settings) -> ReloadResult:
        old = self.settings
        applied, restart = [], []
        if new.risk != old.risk:
            self.path.risk.reload(new.risk)
            self.path.monitor.reload(new.risk)
            applied.append("risk")
        if new.daemon.log_level != old.daemon.log_level:
            set_level(new.daemon.log_level)
            applied.append("daemon.log_level")
        if new.daemon.model_copy(update={"log_level": old.daemon.log_level}) != old.daemon:
            restart.append("daemon")
        for name in type(new).model_fields:
            if name not in ("risk", "daemon") and getattr(new, name) != getattr(old, name):
                restart.append(name)
        self.settings = old.model_copy(update={"risk": new.risk,
                                               "daemon": old.daemon.model_copy(
                                                   update={"log_level": new.daemon.log_level})})
        log.warning("config_reloaded", config=str(self.config_path), applied=applied, needs_restart=restart)
        return ReloadResult(True, applied, restart)
