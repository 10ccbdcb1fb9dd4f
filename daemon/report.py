"""The backtest report: `report.json` (deterministic: same inputs, same bytes) and `run.json`
(wall-time figures, which differ run to run and so live apart)."""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import orjson

from daemon import __version__
from daemon.book import BookState
from daemon.features import SCHEMA_VERSION
from daemon.replay import ReplayResult
from daemon.risk.gate import snapshot_rejects


def _r(x: float | None, nd: int = 10) -> float | None:
    """Round for the report: figures stay stable and readable across platforms' float printing."""
    return None if x is None else round(float(x), nd)


def build_report(result: ReplayResult, top_levels: int = 5) -> dict[str, Any]:
    """The report of a finished replay, as plain JSON-able data."""
    p = result.path
    eng = p.engine
    books: dict[str, Any] = {}
    for symbol in sorted(eng.syncs):
        sync = eng.syncs[symbol]
        inst = p.instruments[symbol]
        bpx, bqty, apx, aqty = sync.book.top(top_levels)
        books[symbol] = {
            "states": {str(s): sync.state_counts[s] for s in BookState},
            "state": str(sync.state),
            "crossed": sync.crossed,
            "transitions": sync.transitions,
            "absent_deletes": sync.book.absent_deletes,
            "depth": {"bids": sync.book.n_bid, "asks": sync.book.n_ask},
            "trusted_depth": dict(zip(("bids", "asks"), sync.book.trusted_levels(), strict=True)),
            "resets": dict(sorted(sync.resets.items())),  # the venue's sync rules lost the book: gap, disconnect...
            "checksum": {"checks": sync.checksum_checks, "failures": sync.checksum_failures},
            "quotes": {"checks": sync.quote_checks, "mismatches": sync.quote_mismatches},
            "final": {
                "bids": [[inst.price(px), inst.qty(q)] for px, q in zip(bpx.tolist(), bqty.tolist(), strict=True)],
                "asks": [[inst.price(px), inst.qty(q)] for px, q in zip(apx.tolist(), aqty.tolist(), strict=True)],
            },
        }
    fills = []
    for f in eng.fills:
        inst = p.instruments[f.symbol]
        fills.append({"ts": f.ts, "symbol": f.symbol, "client_id": f.client_id, "side": f.side.name.lower(),
                      "price": inst.price(f.price), "qty": inst.qty(f.qty), "fee": _r(f.fee),
                      "liquidity": str(f.liquidity), "trade_id": f.trade_id})
    rejects = dict(snapshot_rejects(p.risk))
    for reason, n in sorted(eng.broker_rejects.items()):
        rejects[f"broker:{reason}"] = n
    pnl = p.portfolio.pnl()
    stats = result.stats
    return {
        "depthd_version": __version__,
        "feature_schema_version": SCHEMA_VERSION,
        "model": eng.model.stats() if eng.model is not None else None,
        "inputs": result.inputs,
        "venues": result.venues,
        "span_ns": {"first": stats.first_ts, "last": stats.last_ts},
        "events": {
            "messages": stats.messages,
            "snapshot": eng.counts["snapshot"],
            "delta": eng.counts["delta"],
            "trade": eng.counts["trade"],
            "level_updates": eng.counts["level_updates"],
            "quote": eng.counts["quote"],
            "reset": eng.counts["reset"],
            "bad_lines": stats.bad_lines,
            "samples": eng.counts["samples"],
        },
        "bad_lines_by_problem": dict(sorted(stats.bad_reasons.items())),
        "book": books,
        "strategy_errors": eng.counts["strategy_errors"],
        "intents": eng.counts["intents"],
        "orders": eng.counts["orders"],
        "cancels_sent": eng.counts["cancels_sent"],
        "fills_total": eng.counts["fills"],
        "fills": fills,
        "rejects": rejects,
        "risk": {"state": str(p.state.state), "transitions": p.state.as_dicts(),
                 "transition_counts": dict(sorted(p.state.counts.items())),
                 "triggers_fired": dict(sorted(p.monitor.triggers.fire_counts.items())),
                 "halt_cancels": eng.counts["halt_cancels"], "flatten_orders": eng.counts["flatten_orders"]},
        "position": {sym: {k: _r(v) if isinstance(v, float) else v for k, v in d.items()}
                     for sym, d in p.portfolio.snapshot().items()},
        "pnl": {k: _r(v) for k, v in pnl.items()},
        "max_drawdown": _r(p.portfolio.max_drawdown),
        "equity_curve": [[ts, _r(eq)] for ts, eq in p.portfolio.equity_curve],
        "broker": p.broker.stats,
    }


def build_run_info(result: ReplayResult) -> dict[str, Any]:
    """Wall-time figures of this run: they vary run to run, so they stay out of report.json."""
    stats = result.stats
    secs = stats.wall_seconds
    return {
        "wall_seconds": round(secs, 6),
        "messages": stats.messages,
        "messages_per_second": round(stats.messages / secs, 1) if secs > 0 else None,
        "level_updates_per_second": round(result.path.engine.counts["level_updates"] / secs, 1) if secs > 0 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "pid": os.getpid(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file, then rename), so a reader never sees half a report."""
    _write_atomically(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    _write_atomically(path, text.encode("utf-8"))


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def summary_lines(report: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """A short human summary of a replay for the terminal."""
    ev = report["events"]
    out = [
        f"replayed {ev['messages']} messages ({ev['snapshot']} snapshot, {ev['delta']} delta, {ev['trade']} trade, "
        f"{ev['level_updates']} level updates, {ev['bad_lines']} bad lines) in {run['wall_seconds']:.2f} s "
        f"({run['messages_per_second'] or 0:,.0f} msg/s)",
    ]
    for sym, b in report["book"].items():
        bb = b["final"]["bids"][0] if b["final"]["bids"] else None
        ba = b["final"]["asks"][0] if b["final"]["asks"] else None
        resets = ", ".join(f"{n} {why}" for why, n in b["resets"].items()) or "none"
        out.append(f"  {sym}: book {b['state']}, crossed {b['crossed']}, resets {resets}, best bid {bb}, "
                   f"best ask {ba}")
    pnl = report["pnl"]
    out.append(f"orders {report['orders']}, fills {report['fills_total']}, rejects {report['rejects'] or 0}")
    out.append(f"pnl realised {pnl['realised']}, unrealised {pnl['unrealised']}, fees {pnl['fees']}, "
               f"max drawdown {report['max_drawdown']}")
    risk = report["risk"]
    out.append(f"trading {risk['state']} at the end; {len(risk['transitions'])} state transitions, "
               f"triggers fired {risk['triggers_fired'] or 0}")
    return out
