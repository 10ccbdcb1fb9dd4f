"""The control endpoint: a small aiohttp server for operators (`POST /kill`, `POST /resume`, `GET /status`).

Every route asks for `Authorization: Bearer <token>` unless it is added with `auth=False`; the token is
compared in constant time and never logged. Routes answer JSON; any error is `{"error": "..."}` with a
fitting status (400 bad body, 401 no or wrong token, 404/405, 413 body too large, 500 handler failed).

The server is a thin shell (DESIGN rule 1): it parses and checks the request, then makes one
synchronous call on a `ControlHandler` on the event loop, so the core sees no concurrency. More
routes (the operations endpoints) are added with `add_route` before `start`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import structlog
from aiohttp import web

from daemon.errors import ConfigError, LocalError
from daemon.logs import register_secret
from daemon.secret_files import read_owner_only

log = structlog.get_logger("depthd.control")

TOKEN_ENV = "DEPTHD_CONTROL_TOKEN"
MIN_TOKEN_LENGTH = 16
MAX_BODY_BYTES = 64 * 1024
DEFAULT_REASON = "manual"
DEFAULT_OPERATOR = "unknown"

RouteFn = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    """The request body is unusable; the message says why and goes back to the client with status 400."""


class ControlHandler(Protocol):
    """What the control endpoint asks of the daemon; each call returns the JSON answer."""

    def kill(self, flatten: bool, reason: str, operator: str) -> dict:
        """Halt trading (cancel open orders; flatten positions if asked)."""

    def resume(self, operator: str, reason: str) -> dict:
        """Leave the halted state and trade again."""

    def status(self) -> dict:
        """The trading state and whatever else an operator should see."""


def _check_token(token: str, source: str) -> str:
    if not token:
        raise ConfigError(f"control token from {source} is empty")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"control token from {source} is too short ({len(token)} characters, at least "
                          f"{MIN_TOKEN_LENGTH} needed; e.g. `openssl rand -hex 32`)")
    if not all("!" <= c <= "~" for c in token):
        raise ConfigError(f"control token from {source} must be printable ASCII without spaces")
    register_secret(token)
    return token


def load_token(env_var: str = TOKEN_ENV, token_file: str | None = None) -> str:
    """The control token: from the environment variable if set, else from a file only its owner can read."""
    from_env = os.environ.get(env_var, "").strip()
    if from_env:
        return _check_token(from_env, f"environment variable {env_var}")
    if token_file is None:
        raise ConfigError(f"no control token: set the environment variable {env_var} or give a token file "
                          f"(one line, at least {MIN_TOKEN_LENGTH} characters, mode 600)")
    text = read_owner_only(token_file, "control token file", 4096)
    return _check_token(text.strip(), f"file {token_file}")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response (orjson) with the given status."""
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one shape of every error answer: {"error": message}."""
    return json_response({"error": message}, status=status, headers=headers)


async def read_json_object(request: web.Request, fields: dict[str, type]) -> dict[str, Any]:
    """The request body as a JSON object holding only the given fields of the given types ({} if empty)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    for key, value in body.items():
        if key not in fields:
            raise BadRequest(f"unknown field {key!r}; allowed: {', '.join(sorted(fields))}")
        if not isinstance(value, fields[key]):
            raise BadRequest(f"field {key!r} must be {fields[key].__name__}, got {type(value).__name__}")
    return body


@web.middleware
async def _errors_as_json(request: web.Request, handler: RouteFn) -> web.StreamResponse:
    """Every HTTP error and every unexpected exception becomes a JSON error answer."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error_response(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        return error_response(exc.status, exc.text or exc.reason, headers)
    except Exception:
        log.exception("control_request_failed", method=request.method, path=request.path)
        return error_response(500, "internal error while handling the request (see the daemon's log)")


class ControlServer:
    """The daemon's HTTP control endpoint, bound only to the configured host and port."""

    def __init__(self, handler: ControlHandler, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        if not host:
            raise ConfigError("control endpoint host must be set (e.g. 127.0.0.1); refusing to bind every address")
        self._handler = handler
        self._token = _check_token(token, "the control server's settings").encode()
        self._host = host
        self._port = port
        self._app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors_as_json])
        self._runner: web.AppRunner | None = None
        self._started = False
        self._bound_port: int | None = None
        self.auth_failures = 0
        self.add_route("POST", "/kill", self._kill)
        self.add_route("POST", "/resume", self._resume)
        self.add_route("GET", "/status", self._status)

    def add_route(self, method: str, path: str, fn: RouteFn, *, auth: bool = True) -> None:
        """Serve fn at method + path (before `start`); auth=False makes the route public."""
        if self._started:
            raise LocalError(f"control server: route {method} {path} added after start")
        self._app.router.add_route(method, path, self._authenticated(fn) if auth else fn)

    def _authenticated(self, fn: RouteFn) -> RouteFn:
        async def guarded(request: web.Request) -> web.StreamResponse:
            problem = self._auth_problem(request.headers.get("Authorization"))
            if problem is None:
                return await fn(request)
            self.auth_failures += 1
            log.warning("control_auth_failed", method=request.method, path=request.path,
                        remote=request.remote, problem=problem, failures=self.auth_failures)
            challenge = 'Bearer realm="depthd"'
            if problem != "missing Authorization header":
                challenge += ', error="invalid_token"'
            return error_response(401, f"unauthorized: {problem}", {"WWW-Authenticate": challenge})

        return guarded

    def _auth_problem(self, header: str | None) -> str | None:
        if header is None:
            return "missing Authorization header"
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "Authorization header is not 'Bearer <token>'"
        if not hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"), self._token):
            return "wrong token"
        return None

    async def _kill(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, {"flatten": bool, "reason": str, "operator": str})
        flatten = body.get("flatten", False)
        reason = body.get("reason") or DEFAULT_REASON
        operator = body.get("operator") or DEFAULT_OPERATOR
        log.warning("control_kill", flatten=flatten, reason=reason, operator=operator, remote=request.remote)
        return json_response(self._handler.kill(flatten=flatten, reason=reason, operator=operator))

    async def _resume(self, request: web.Request) -> web.Response:
        body = await read_json_object(request, {"reason": str, "operator": str})
        reason = body.get("reason") or DEFAULT_REASON
        operator = body.get("operator") or DEFAULT_OPERATOR
        log.warning("control_resume", reason=reason, operator=operator, remote=request.remote)
        return json_response(self._handler.resume(operator=operator, reason=reason))

    async def _status(self, request: web.Request) -> web.Response:
        return json_response(self._handler.status())

    async def start(self) -> None:
        """Bind and serve on the running event loop; a port that cannot be bound is a ConfigError."""
        if self._started:
            raise LocalError("control server: started twice (a stopped server cannot be restarted)")
        self._started = True
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"control endpoint cannot listen on {self._host}:{self._port}: "
                              f"{exc.strerror or exc}") from exc
        self._runner = runner
        self._bound_port = runner.addresses[0][1]
        log.info("control_listening", url=self.url)

    async def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await runner.cleanup()
        log.info("control_stopped")

    @property
    def port(self) -> int:
        """The bound port (the real one when configured with port 0)."""
        if self._bound_port is None:
            raise LocalError("control server: port asked before start")
        return self._bound_port

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. http://127.0.0.1:8787."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"
