"""The CLI side of the control endpoint: `depthd kill [--flatten]`, `depthd resume`, `depthd status`.

Each command loads the token (environment first, then --token-file), makes one request to the
running daemon and prints its JSON answer as one line. Every failure is a `ControlError` that says
what went wrong in operator terms (nothing listening, token refused, timeout, HTTP error).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass

import aiohttp
import orjson

from daemon.control import TOKEN_ENV, load_token
from daemon.errors import ControlError, LocalError

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_TIMEOUT_S = 5.0
_METHODS = {"kill": "POST", "resume": "POST", "status": "GET"}




def _server_message(text: str) -> str:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"]
    return text.strip()[:200] or "(empty answer)"


async def send(url: str, action: str, token: str, body: dict | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Send one control request (kill, resume or status) to the daemon at url and return its JSON answer."""
    if action not in _METHODS:
        raise LocalError(f"unknown control action {action!r}; known: {', '.join(_METHODS)}")
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ControlError(f"control URL {url!r} must look like http://HOST:PORT")
    endpoint = f"{base}/{action}"
    headers = {"Authorization": f"Bearer {token}"}
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
                _METHODS[action], endpoint, data=data, headers=headers, allow_redirects=False) as resp:
            text = await resp.text(errors="replace")
            status = resp.status
    except aiohttp.ClientConnectorDNSError as exc:
        raise ControlError(f"no daemon at {base}: cannot resolve host {exc.host!r}") from exc
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
        raise ControlError(f"no daemon listening at {base} ({why}); is depthd running with its control "
                           f"endpoint on that address?") from exc
    except TimeoutError as exc:
        raise ControlError(f"no answer from the daemon at {base} within {timeout_s:g} s") from exc
    except aiohttp.ClientError as exc:
        raise ControlError(f"talking to the daemon at {base} failed: {exc.__class__.__name__}: {exc}") from exc
    if status == 401:
        raise ControlError(f"token refused by the daemon at {base} ({_server_message(text)}); check "
                           f"{TOKEN_ENV} or --token-file")
    if status != 200:
        raise ControlError(f"daemon at {base} answered HTTP {status} to {action}: {_server_message(text)}")
    try:
        answer = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"daemon at {base} answered {action} with something that is not JSON: "
                           f"{text[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise ControlError(f"daemon at {base} answered {action} with JSON that is not an object: {text[:200]!r}")
    return answer


def send_sync(url: str, action: str, token: str, body: dict | None = None,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """`send` for code without an event loop (the CLI); not for use inside a running loop."""
    return asyncio.run(send(url, action, token, body, timeout_s))


def _default_operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def _seconds(text: str) -> float:
    value = float(text)
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError("timeout must be a positive number of seconds")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help="the daemon's control endpoint (default: %(default)s)")
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help=f"file holding the control token, mode 600 (the environment variable {TOKEN_ENV} "
                             f"is used first)")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                        help="give up after this long (default: %(default)s)")


def _add_who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="manual", help="why, for the journal (default: %(default)s)")
    parser.add_argument("--operator", default=_default_operator(),
                        help="who, for the journal (default: your user name, %(default)s)")


def add_kill_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `depthd kill`."""
    _add_common(parser)
    parser.add_argument("--flatten", action="store_true", help="also close every position after cancelling orders")
    _add_who(parser)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `depthd resume`."""
    _add_common(parser)
    _add_who(parser)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `depthd status`."""
    _add_common(parser)


def _print_answer(answer: dict) -> None:
    print(orjson.dumps(answer, option=orjson.OPT_SORT_KEYS).decode())


def cmd_kill(args: argparse.Namespace) -> int:
    """`depthd kill`: halt the running daemon (and flatten if asked); print its answer."""
    token = load_token(token_file=args.token_file)
    body = {"flatten": bool(args.flatten), "reason": args.reason, "operator": args.operator}
    _print_answer(send_sync(args.url, "kill", token, body, args.timeout))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """`depthd resume`: let the halted daemon trade again; print its answer."""
    token = load_token(token_file=args.token_file)
    body = {"reason": args.reason, "operator": args.operator}
    _print_answer(send_sync(args.url, "resume", token, body, args.timeout))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """`depthd status`: print the running daemon's status."""
    token = load_token(token_file=args.token_file)
    _print_answer(send_sync(args.url, "status", token, None, args.timeout))
    return 0
