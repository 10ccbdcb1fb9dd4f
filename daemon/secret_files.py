"""Reading a secret from a file only its owner may read (control tokens, API credentials)."""

from __future__ import annotations

import os
import stat

from daemon.errors import ConfigError


def read_owner_only(path: str, what: str, max_bytes: int) -> str:
    """The text of `path`, refused (ConfigError naming `what` and the fix) unless it is a regular UTF-8
    file of at most `max_bytes` that neither group nor others may read or write."""
    try:
        with open(path, encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{what} {path} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise ConfigError(f"{what} {path} has mode {mode:04o}: group or others may read or write it; "
                                  f"run `chmod 600 {path}`")
            text = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from exc
    if len(text) > max_bytes:
        raise ConfigError(f"{what} {path} is larger than {max_bytes} bytes")
    return text
