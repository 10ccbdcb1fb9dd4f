"""JSON log lines: stable keys, secrets redacted, repeats rate-limited, level changed at runtime."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from daemon.logs import RateLimiter, configure_logging, current_level, register_secret, set_level


@pytest.fixture
def lines():
    buf = io.StringIO()
    now = [0.0]
    configure_logging("info", buf, limiter=RateLimiter(burst=3, window_s=10, now=lambda: now[0]))
    yield (lambda: [json.loads(x) for x in buf.getvalue().splitlines()]), now
    configure_logging("info")
    structlog.reset_defaults()


def test_one_json_object_a_line_with_stable_keys(lines) -> None:
    read, _ = lines
    structlog.get_logger("depthd.test").info("order_sent", client_id="dd-1-2", qty=3)
    [line] = read()
    assert line["event"] == "order_sent" and line["level"] == "info" and line["logger"] == "depthd.test"
    assert line["wall_time"].endswith("Z") and (line["client_id"], line["qty"]) == ("dd-1-2", 3)


def test_secrets_are_redacted_by_name_and_by_value(lines) -> None:
    read, _ = lines
    register_secret("k3y-0f-the-venue-123")
    structlog.get_logger("x").warning("venue_error", api_secret="s", token="t",
                                      url="https://v/x?apiKey=k3y-0f-the-venue-123&q=1", nested={"password": "p"})
    [line] = read()
    assert line["api_secret"] == line["token"] == "[redacted]" and line["nested"] == {"password": "[redacted]"}
    assert "k3y-0f-the-venue-123" not in json.dumps(line) and "apiKey=[redacted]&q=1" in line["url"]


def test_identical_errors_are_rate_limited_then_summarised(lines) -> None:
    read, now = lines
    log = structlog.get_logger("x")
    for _ in range(10):
        log.error("venue_down", venue="binance")
    log.error("venue_down", venue="okx")  # another error: its own budget
    out = read()
    assert [x["venue"] for x in out] == ["binance"] * 3 + ["okx"]
    assert "rate_limited" in out[2]
    now[0] = 11.0
    log.error("venue_down", venue="binance")
    assert read()[-1]["suppressed_before"] == 7


def test_level_changes_at_runtime_for_loggers_already_made(lines) -> None:
    read, _ = lines
    log = structlog.get_logger("x")
    log.debug("hidden")
    set_level("debug")
    log.debug("shown")
    assert current_level() == "debug" and [x["event"] for x in read()] == ["shown"]
    with pytest.raises(ValueError, match="verbose"):
        set_level("verbose")
