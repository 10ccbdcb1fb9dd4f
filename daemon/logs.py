"""structlog set-up: one JSON object a line with stable keys, secrets redacted, repeats rate-limited.

- Keys: `event`, `level`, `logger` (the module logger's name when it has one), `wall_time` (ISO UTC), then
  the event's own fields, sorted.
- Secrets: the value of any field whose name says it holds one (token, secret, password, api key,
  signature, authorization) is replaced by "[redacted]", and every secret the daemon loaded
  (`register_secret`: API keys, the control token) is masked wherever it appears in a string.
- Repeats: the same warning or error (same event, level and fields) is written at most `burst` times per
  `window_s`; then one `log_suppressed` line says how many were dropped when the window ends.
- Level: from config, and changed at runtime by `set_level` (SIGHUP) without re-creating loggers.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"(?i)(token|secret|passw|api_?key|apikey|signature|authori[sz]ation|credential)")
_MIN_SECRET = 8  # shorter "secrets" would mask ordinary words


class _State:
    level = logging.INFO
    secrets: set[str] = set()
    pattern: re.Pattern[str] | None = None


def set_level(level: str) -> None:
    """Change the level of every logger now (SIGHUP reload); unknown names are a ValueError."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: not one of {', '.join(LEVELS)}")
    _State.level = LEVELS[level]


def current_level() -> str:
    """The level in force."""
    return next(name for name, n in LEVELS.items() if n == _State.level)


def register_secret(value: str) -> None:
    """Mask this value wherever it appears in a logged string (API keys, tokens)."""
    if len(value) >= _MIN_SECRET and value not in _State.secrets:
        _State.secrets.add(value)
        _State.pattern = re.compile("|".join(re.escape(s) for s in sorted(_State.secrets, key=len, reverse=True)))


def _mask(value: Any) -> Any:
    if isinstance(value, str) and _State.pattern is not None:
        return _State.pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: (REDACTED if _SECRET_KEY.search(str(k)) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: hide secret-named fields and registered secret values."""
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEY.search(key):
            event[key] = REDACTED
        else:
            event[key] = _mask(value)
    return event


class RateLimiter:
    """structlog processor: the same warning/error at most `burst` times a window, then a summary line."""

    def __init__(self, burst: int = 5, window_s: float = 60.0, now: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self._now = burst, window_s, now
        self._seen: dict[str, list[float | int]] = {}  # key -> [window start, count]
        self.suppressed = 0

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Pass the event, mark the last of a burst, or drop it (structlog.DropEvent)."""
        if method not in ("warning", "error", "exception", "critical"):
            return event
        key = f"{method}|{sorted((k, repr(v)) for k, v in event.items() if k not in ('wall_time', 'exc_info'))}"
        now = self._now()
        slot = self._seen.get(key)
        if slot is None or now - slot[0] >= self.window_s:
            dropped = int(slot[1]) - self.burst if slot is not None and slot[1] > self.burst else 0
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[key] = [now, 1]
            if dropped:
                event["suppressed_before"] = dropped  # how many identical lines the last window dropped
            return event
        slot[1] += 1
        if slot[1] > self.burst:
            self.suppressed += 1
            raise structlog.DropEvent
        if slot[1] == self.burst:
            event["rate_limited"] = f"identical lines beyond this are dropped for {self.window_s:g} s"
        return event


def _add_logger_name(logger: Any, _: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name and "logger" not in event:
        event["logger"] = name
    return event


class _Current:
    """Writes to whatever sys.stdout / sys.stderr is at the time of the write (tests replace them)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


class _NamedPrintLoggerFactory:
    """PrintLoggers that remember the name `structlog.get_logger(name)` was called with."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        logger = structlog.PrintLogger(self._file)
        logger.name = str(args[0]) if args else ""  # type: ignore[attr-defined]
        return logger


class _LevelLogger(structlog.BoundLoggerBase):
    """A bound logger whose level is `_State.level`, read at each call, so `set_level` acts at once."""

    def _at(self, level: int, method: str, event: str | None, kw: dict[str, Any]) -> Any:
        if level < _State.level:
            return None
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.DEBUG, "debug", event, kw)

    def info(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.INFO, "info", event, kw)

    def warning(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.WARNING, "warning", event, kw)

    warn = warning

    def error(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.ERROR, "error", event, kw)

    def exception(self, event: str | None = None, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._at(logging.ERROR, "error", event, kw)

    def critical(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.CRITICAL, "critical", event, kw)

    def msg(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.INFO, "info", event, kw)


def configure_logging(level: str = "info", stream: TextIO | None = None, *, to: str = "stderr",
                      limiter: RateLimiter | None = None) -> None:
    """JSON lines to `stream`, else stdout or stderr (`to`): a service logs to stdout for journald; a command
    whose stdout carries its results (replay, features) keeps its log on stderr."""
    set_level(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            limiter or RateLimiter(),
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="wall_time"),
            structlog.processors.format_exc_info,
            redact,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=_LevelLogger,
        logger_factory=_NamedPrintLoggerFactory(stream or _Current(to)),
        cache_logger_on_first_use=True,
    )
