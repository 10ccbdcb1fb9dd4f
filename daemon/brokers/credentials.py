"""Venue API credentials: from environment variables or from a file only the daemon's user can read.

    creds = load_credentials("BINANCE")          # DEPTHD_BINANCE_API_KEY / _API_SECRET / _API_PASSWORD
    creds = load_credentials("BINANCE", path)    # else the file: `api_key = ...`, `api_secret = ...` lines

The environment wins when its key variable is set (then the secret variable must be set too). A file
must be a regular file with no group/other permission bits (mode 600 or 400), like the control token
(daemon/control.py); anything else is refused with a ConfigError naming the file and the fix. Lines
are `name = value` (blank lines and `#` comments allowed); names: api_key, api_secret, api_password
(the passphrase some venues use). Secrets never appear in reprs, error messages or logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from daemon.errors import ConfigError
from daemon.logs import register_secret
from daemon.secret_files import read_owner_only

_FIELDS = ("api_key", "api_secret", "api_password")
MAX_FILE_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class ApiCredentials:
    """An API key pair (and optional passphrase); the secret parts never show in repr."""

    api_key: str
    api_secret: str = field(repr=False)
    api_password: str = field(default="", repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_secret:
            raise ConfigError(f"API credentials from {self.source or 'config'}: api_key and api_secret must be set")
        for name in _FIELDS:
            value = getattr(self, name)
            if value != value.strip() or any(c in value for c in "\r\n\0"):
                raise ConfigError(f"API credentials from {self.source or 'config'}: {name} has whitespace or "
                                  f"control characters")
            register_secret(value)  # masked wherever it would appear in a log line

    def __repr__(self) -> str:
        return f"ApiCredentials(api_key={_mask(self.api_key)!r}, source={self.source!r})"

    __str__ = __repr__

    def ccxt_config(self) -> dict[str, str]:
        """The ccxt constructor keys for these credentials (apiKey, secret, password if any)."""
        out = {"apiKey": self.api_key, "secret": self.api_secret}
        if self.api_password:
            out["password"] = self.api_password
        return out


def env_names(venue: str) -> tuple[str, str, str]:
    """The environment variables holding a venue's key, secret and passphrase: DEPTHD_<VENUE>_API_KEY etc."""
    v = venue.upper().replace("-", "_")
    if not v.replace("_", "").isalnum():
        raise ConfigError(f"venue name {venue!r} must be letters, digits, '-' or '_'")
    return f"DEPTHD_{v}_API_KEY", f"DEPTHD_{v}_API_SECRET", f"DEPTHD_{v}_API_PASSWORD"


def load_credentials(venue: str, path: str | None = None) -> ApiCredentials:
    """A venue's API credentials from DEPTHD_<VENUE>_API_* environment variables, else from an owner-only file."""
    key_var, secret_var, password_var = env_names(venue)
    key = os.environ.get(key_var, "").strip()
    if key:
        secret = os.environ.get(secret_var, "").strip()
        if not secret:
            raise ConfigError(f"{key_var} is set but {secret_var} is not")
        return ApiCredentials(key, secret, os.environ.get(password_var, "").strip(), f"environment {key_var}")
    if path is None:
        raise ConfigError(f"no API credentials for {venue}: set {key_var} and {secret_var}, or give a credentials "
                          f"file (lines `api_key = ...`, `api_secret = ...`, mode 600)")
    return _read_file(path)


def _read_file(path: str) -> ApiCredentials:
    text = read_owner_only(path, "credentials file", MAX_FILE_BYTES)
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in _FIELDS:
            raise ConfigError(f"credentials file {path} line {n}: expected `api_key|api_secret|api_password = "
                              f"value` (the line is not shown: it may hold a secret)")
        if name in values:
            raise ConfigError(f"credentials file {path} line {n}: {name} given twice")
        values[name] = value.strip().strip('"')
    return ApiCredentials(values.get("api_key", ""), values.get("api_secret", ""), values.get("api_password", ""),
                          f"file {path}")


def _mask(key: str) -> str:
    """An API key shortened for display: its first 4 characters and its length."""
    return f"{key[:4]}...({len(key)} chars)" if len(key) > 8 else "***"
