"""API credentials: environment first, else an owner-only file; secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.brokers.credentials import ApiCredentials, env_names, load_credentials
from daemon.errors import ConfigError

SECRET = "s3cr3t-value-never-shown"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names("binance"):
        monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    p = tmp_path / "binance.keys"
    p.write_text(text)
    os.chmod(p, mode)
    return str(p)


def test_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert env_names("binance-us") == ("DEPTHD_BINANCE_US_API_KEY", "DEPTHD_BINANCE_US_API_SECRET",
                                       "DEPTHD_BINANCE_US_API_PASSWORD")
    monkeypatch.setenv("DEPTHD_BINANCE_API_KEY", "key-from-env-123")
    with pytest.raises(ConfigError, match="DEPTHD_BINANCE_API_SECRET is not"):
        load_credentials("binance")
    monkeypatch.setenv("DEPTHD_BINANCE_API_SECRET", SECRET)
    c = load_credentials("binance", write(tmp_path, "api_key = other\napi_secret = other\n"))
    assert (c.api_key, c.api_secret, c.api_password) == ("key-from-env-123", SECRET, "")
    assert c.ccxt_config() == {"apiKey": "key-from-env-123", "secret": SECRET}


def test_from_an_owner_only_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"# binance testnet\napi_key = abcd1234efgh\n\napi_secret = \"{SECRET}\"\n"
                           "api_password = pass\n", 0o400)
    c = load_credentials("binance", path)
    assert (c.api_key, c.api_secret, c.api_password) == ("abcd1234efgh", SECRET, "pass")
    assert c.ccxt_config()["password"] == "pass"
    assert SECRET not in repr(c) and SECRET not in str(c) and "pass" not in repr(c) and "abcd" in repr(c)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path, f"api_key = k\napi_secret = {SECRET}\n", mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}.*chmod 600") as err:
        load_credentials("binance", path)
    assert SECRET not in str(err.value)


def test_bad_files_are_refused_without_echoing_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set DEPTHD_BINANCE_API_KEY"):
        load_credentials("binance")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_credentials("binance", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="not a regular file"):
        load_credentials("binance", os.devnull)
    for text, problem in ((f"{SECRET}\n", "line 1"), ("api_key = a\napi_key = b\napi_secret = c\n", "twice"),
                          ("api_key = a\n", "must be set"), (f"api_key = a\napi_secret = {SECRET}\0x\n", "control")):
        with pytest.raises(ConfigError, match=problem) as err:
            load_credentials("binance", write(tmp_path, text))
        assert SECRET not in str(err.value)
    with pytest.raises(ConfigError, match="venue name"):
        env_names("bin ance")
    with pytest.raises(ConfigError):
        ApiCredentials("", SECRET)
