"""report.html: the backtest report for people — summary tables and the equity curve as inline SVG.

Made from the same dict as report.json, with no wall time in it, so it is as deterministic as the
JSON. Self-contained: no scripts, no external assets.
"""

from __future__ import annotations

from html import escape
from typing import Any

_W, _H, _PAD = 900, 260, 40
_MAX_FILL_ROWS = 200


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def equity_svg(curve: list[list[float]]) -> str:
    """The equity curve as an SVG polyline with its min/max labelled; a note when it is empty."""
    if len(curve) < 2:
        return "<p>No equity curve (fewer than two samples).</p>"
    ts = [p[0] for p in curve]
    eq = [p[1] for p in curve]
    t0, t1 = ts[0], ts[-1]
    lo, hi = min(eq), max(eq)
    span_t = (t1 - t0) or 1
    span_e = (hi - lo) or 1.0
    pts = " ".join(
        f"{_PAD + (t - t0) / span_t * (_W - 2 * _PAD):.1f},{_H - _PAD - (e - lo) / span_e * (_H - 2 * _PAD):.1f}"
        for t, e in zip(ts, eq, strict=True))
    zero = ""
    if lo < 0 < hi:
        y = _H - _PAD - (0 - lo) / span_e * (_H - 2 * _PAD)
        zero = f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y:.1f}" y2="{y:.1f}" class="zero"/>'
    minutes = (t1 - t0) / 60e9
    return (f'<svg viewBox="0 0 {_W} {_H}" role="img" aria-label="equity curve">'
            f'<rect x="{_PAD}" y="{_PAD}" width="{_W - 2 * _PAD}" height="{_H - 2 * _PAD}" class="frame"/>{zero}'
            f'<polyline points="{pts}" class="eq"/>'
            f'<text x="4" y="{_PAD}">{hi:.4g}</text><text x="4" y="{_H - _PAD}">{lo:.4g}</text>'
            f'<text x="{_PAD}" y="{_H - 8}">0 min</text>'
            f'<text x="{_W - _PAD}" y="{_H - 8}" text-anchor="end">{minutes:.1f} min</text></svg>')


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    ev = report["events"]
    pnl = report["pnl"]
    summary = _table([
        ("inputs", ", ".join(report["inputs"])),
        ("messages", f"{ev['messages']} ({ev['snapshot']} snapshot, {ev['delta']} delta, {ev['trade']} trade)"),
        ("level updates", ev["level_updates"]),
        ("bad lines", ev["bad_lines"]),
        ("orders / fills", f"{report['orders']} / {report['fills_total']}"),
        ("risk and broker rejects", ", ".join(f"{k}: {v}" for k, v in report["rejects"].items()) or "none"),
        ("PnL realised / unrealised / fees / net",
         f"{pnl['realised']} / {pnl['unrealised']} / {pnl['fees']} / {pnl['net']}"),
        ("max drawdown", report["max_drawdown"]),
    ])
    books = []
    for sym, b in report["book"].items():
        states = ", ".join(f"{k} {v}" for k, v in b["states"].items())
        levels = "".join(
            f"<tr><td>{escape(str(bid[1]))}</td><td>{escape(str(bid[0]))}</td>"
            f"<td>{escape(str(ask[0]))}</td><td>{escape(str(ask[1]))}</td></tr>"
            for bid, ask in zip(b["final"]["bids"], b["final"]["asks"], strict=False))
        books.append(f"<h3>{escape(sym)}</h3>" + _table([("state", b["state"]), ("events by state", states),
                                                         ("crossed", b["crossed"])])
                     + f"<table><tr><th>bid qty</th><th>bid</th><th>ask</th><th>ask qty</th></tr>{levels}</table>")
    positions = "".join(
        f"<tr><td>{escape(sym)}</td><td>{p['qty']}</td><td>{p['avg_price']}</td><td>{p['realised']}</td>"
        f"<td>{p['unrealised']}</td><td>{p['fees']}</td></tr>" for sym, p in report["position"].items())
    fills = "".join(
        f"<tr><td>{f['ts']}</td><td>{escape(f['symbol'])}</td><td>{f['side']}</td><td>{f['price']}</td>"
        f"<td>{f['qty']}</td><td>{f['fee']}</td><td>{f['liquidity']}</td></tr>"
        for f in report["fills"][:_MAX_FILL_ROWS])
    more = len(report["fills"]) - _MAX_FILL_ROWS
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>depthd backtest report</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
svg {{ width: 100%; max-width: {_W}px; }} .eq {{ fill: none; stroke: #1565c0; stroke-width: 1.5; }}
.frame {{ fill: none; stroke: #ccc; }} .zero {{ stroke: #999; stroke-dasharray: 4 3; }} text {{ font-size: 11px; }}
</style></head><body>
<h1>depthd backtest report</h1>
<p>depthd {escape(str(report["depthd_version"]))}, feature schema v{report["feature_schema_version"]}</p>
<h2>Summary</h2>{summary}
<h2>Equity (net PnL)</h2>{equity_svg(report["equity_curve"])}
<h2>Positions</h2><table><tr><th>symbol</th><th>qty</th><th>avg price</th><th>realised</th><th>unrealised</th>
<th>fees</th></tr>{positions}</table>
<h2>Books</h2>{"".join(books)}
<h2>Fills</h2><table><tr><th>ts (ns)</th><th>symbol</th><th>side</th><th>price</th><th>qty</th><th>fee</th>
<th>liquidity</th></tr>{fills}</table>{f"<p>… and {more} more in report.json</p>" if more > 0 else ""}
</body></html>
"""
