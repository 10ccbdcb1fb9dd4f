"""Building the ccxt pro client a live session trades through: credentials, ccxt's rate limiter, the
venue's testnet, and every URL re-pointed (a loopback fake venue, a proxy) when the config asks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from daemon.brokers.credentials import ApiCredentials, load_credentials
from daemon.config import Settings
from daemon.errors import ConfigError


def ccxt_client(exchange_id: str, credentials: ApiCredentials, *, sandbox: bool = False,
                api_urls: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                timeout_ms: int = 10_000) -> Any:
    """A ccxt pro client: rate limiter on, testnet if `sandbox`, `api_urls` merged over urls['api'];
    ValueError for an exchange ccxt pro does not have."""
    import ccxt.pro as ccxt_pro

    cls = getattr(ccxt_pro, exchange_id, None)
    if not isinstance(cls, type):
        raise ValueError(f"ccxt pro has no exchange {exchange_id!r}")
    ex = cls({**credentials.ccxt_config(), "enableRateLimit": True, "timeout": timeout_ms,
              "options": dict(options or {})})
    if sandbox:
        ex.set_sandbox_mode(True)
    if api_urls:
        ex.urls["api"] = _merge(ex.urls["api"], api_urls)
    return ex


def _merge(base: Any, over: Mapping[str, Any]) -> Any:
    """`base` (a nested dict of URLs) with `over`'s entries put over it, recursively."""
    out = dict(base) if isinstance(base, Mapping) else {}
    for k, v in over.items():
        out[k] = _merge(out.get(k), v) if isinstance(v, Mapping) else v
    return out


def repoint(urls: Any, http_base: str, ws_base: str) -> Any:
    """ccxt's `urls['api']` tree with every URL moved to these bases, keeping each path."""
    if isinstance(urls, dict):
        return {k: repoint(v, http_base, ws_base) for k, v in urls.items()}
    if isinstance(urls, str) and "://" in urls:
        parts = urlsplit(urls)
        base = ws_base if parts.scheme in ("ws", "wss") else http_base
        if not base:
            return urls
        return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return urls


def make_exchange(settings: Settings) -> Any:
    """The configured ccxt pro client: credentials, rate limiter, sandbox, URL overrides."""
    b = settings.broker
    market = "swap" if b.positions else "spot"
    # load only the markets traded: currency metadata and other market types cost requests (and, on
    # Binance, endpoints that need more than trading permissions)
    options: dict[str, Any] = {"defaultType": market, "fetchCurrencies": False}
    if b.exchange == "binance":
        options.update(fetchMarkets={"types": [market]}, fetchMargins=False)
    import ccxt.pro as ccxt_pro

    if not isinstance(getattr(ccxt_pro, b.exchange, None), type):  # before asking for its credentials
        raise ConfigError(f"broker.exchange: ccxt pro has no exchange {b.exchange!r}")
    creds = load_credentials(b.exchange, b.credentials_file or None)
    ex = ccxt_client(b.exchange, creds, sandbox=b.sandbox, options=options)
    if b.rest_url or b.ws_url:
        ex.urls["api"] = repoint(ex.urls["api"], b.rest_url, b.ws_url)
    return ex
