"""Scoring benchmark: one-sample latency of the ONNX scorer on one thread, batch rows/s, drift update cost.

The single-row figure is `Scorer.score` as the engine calls it: gather the model's features out of a
full schema-order float64 sample, run the model through the pre-bound input/output, check the result.
For comparison it also times a plain `session.run` with a fresh input dict per call (what IOBinding
saves). Samples are random N(0, 1) vectors with 5 % NaN, pre-generated so every call takes a
different path through the trees. Without `--model` it scores `strategies/models/sample.onnx` if it
exists, else a representative LightGBM model (200 trees, 15 leaves, 50 features) trained and
converted in-process.

    .venv/bin/python bench/bench_score.py [--model PATH] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.features import schema  # noqa: E402
from daemon.logs import configure_logging  # noqa: E402
from daemon.model.drift import DriftMonitor  # noqa: E402
from daemon.model.metadata import Histogram, ModelMeta  # noqa: E402
from daemon.model.scorer import Scorer, session_options  # noqa: E402

SAMPLE_MODEL = REPO / "strategies" / "models" / "sample.onnx"
TARGET_P99_US = 100.0
TARGET_ROWS_S = 100_000
WARMUP = 2_000


def sample_rows(n: int, seed: int = 7) -> np.ndarray:
    """n full schema-order float64 vectors, N(0, 1) with 5 % NaN."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, len(schema.NAMES)))
    rows[rng.random(rows.shape) < 0.05] = np.nan
    return rows


def histogram(x: np.ndarray, bins: int = 20) -> Histogram:
    """A quantile reference histogram (NaN bin last), as training writes one."""
    finite = x[~np.isnan(x)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    return Histogram(tuple(edges.tolist()), tuple((np.append(counts, len(x) - len(finite)) / len(x)).tolist()))


def train_model(path: Path, n_features: int = 50, trees: int = 200, leaves: int = 15) -> None:
    """Train a LightGBM regressor on synthetic rows, convert it and write it with depthd metadata."""
    import lightgbm as lgb
    import onnx
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = schema.NAMES[:n_features]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50_000, n_features)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    Z = np.nan_to_num(X)
    y = Z[:, 0] - 0.5 * Z[:, 1] + np.tanh(Z[:, 2] * Z[:, 3]) + 0.3 * Z[:, 4:10].sum(1) + rng.normal(size=len(X))
    model = lgb.LGBMRegressor(n_estimators=trees, num_leaves=leaves, learning_rate=0.05, verbose=-1).fit(X, y)
    onx = onnxmltools.convert_lightgbm(model, initial_types=[("features", FloatTensorType([None, n_features]))])
    meta = ModelMeta(feature_names=names, schema_version=schema.SCHEMA_VERSION, label="bench", horizon_ms=1000,
                     task="regression", output_name=onx.graph.output[0].name, output_column=0, data_hash="bench",
                     trainer=f"lightgbm {lgb.__version__} ({trees} trees, {leaves} leaves)",
                     histograms={n: histogram(X[:, i].astype(np.float64)) for i, n in enumerate(names)})
    onnx.helper.set_model_props(onx, meta.to_props())
    path.write_bytes(onx.SerializeToString())


def latencies(fn: Callable[[np.ndarray], object], rows: np.ndarray, calls: int) -> np.ndarray:
    """Per-call wall time in µs of `fn(row)` over `calls` rows (after a warm-up)."""
    for i in range(WARMUP):
        fn(rows[i % len(rows)])
    out = np.empty(calls)
    clock = time.perf_counter_ns
    gc.collect()
    for i in range(calls):
        row = rows[i % len(rows)]
        t0 = clock()
        fn(row)
        out[i] = clock() - t0
    return out / 1e3


def latency_figures(name: str, fn: Callable[[np.ndarray], object], rows: np.ndarray, calls: int,
                    repeat: int) -> float:
    """Print best-of-N and median-of-N of the median / p99 / p99.9 latency; returns the best p99."""
    runs = np.array([np.percentile(latencies(fn, rows, calls), [50, 99, 99.9]) for _ in range(repeat)])
    best, med = runs.min(0), np.median(runs, 0)
    print(f"  {name:<24} best  p50 {best[0]:7.2f}  p99 {best[1]:7.2f}  p99.9 {best[2]:7.2f} µs | "
          f"median of {repeat}: p50 {med[0]:7.2f}  p99 {med[1]:7.2f}  p99.9 {med[2]:7.2f} µs")
    return float(best[1])


def batch_rate(scorer: Scorer, rows: np.ndarray, repeat: int) -> float:
    """Print best / median rows/s of `score_batch` over all rows (schema-order input); returns the best."""
    scorer.score_batch(rows[:1000])
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        scorer.score_batch(rows)
        rates.append(len(rows) / (time.perf_counter() - t0))
    print(f"  {'score_batch':<24} best {max(rates):12,.0f} rows/s | median {statistics.median(rates):12,.0f} rows/s "
          f"({len(rows):,} rows a call)")
    return max(rates)


def drift_cost(meta: ModelMeta, rows: np.ndarray, repeat: int) -> None:
    """Print the per-sample cost of DriftMonitor.update (best of N, mean over the rows)."""
    if not meta.histograms:
        print("  drift: the model has no reference histograms")
        return
    mon = DriftMonitor(meta, min_samples=1)
    mon.update(rows[0])
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for row in rows:
            mon.update(row)
        best = min(best, (time.perf_counter() - t0) / len(rows) * 1e6)
    t0 = time.perf_counter()
    mon.psi()
    psi_us = (time.perf_counter() - t0) * 1e6
    bins = sum(len(h.fractions) for h in meta.histograms.values())
    print(f"  {'DriftMonitor.update':<24} best {best:5.2f} µs/sample ({len(meta.histograms)} features, {bins} bins, "
          f"window {mon.window}); psi() {psi_us:.0f} µs")


def main() -> int:
    """Load or train the model, print latency, batch and drift figures; exit 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None, help=f"ONNX model (default: {SAMPLE_MODEL.relative_to(REPO)} "
                                                             "if present, else one trained in-process)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per figure (after a warm-up)")
    ap.add_argument("--calls", type=int, default=20_000, help="single-row calls per timed run")
    ap.add_argument("--rows", type=int, default=100_000, help="rows per score_batch call")
    args = ap.parse_args()
    if args.repeat < 1 or args.calls < 1 or args.rows < 1:
        ap.error("--repeat, --calls and --rows must be >= 1")
    configure_logging("error")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or (SAMPLE_MODEL if SAMPLE_MODEL.is_file() else None)
        if path is None:
            path = Path(tmp) / "bench.onnx"
            t0 = time.perf_counter()
            train_model(path)
            print(f"trained a bench model in {time.perf_counter() - t0:.1f} s (no {SAMPLE_MODEL.relative_to(REPO)})")
        return run(path, args)


def run(path: Path, args: argparse.Namespace) -> int:
    """Every figure for one model file; 0 if both targets are met."""
    scorer = Scorer.load(path)
    meta = scorer.meta
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, python {sys.version.split()[0]}; "
          f"repeat {args.repeat}; one thread")
    print(f"model {path.name}: {len(meta.feature_names)} features, task {meta.task}, trainer {meta.trainer!r}, "
          f"sha256 {scorer.model_hash[:12]}")
    rows = sample_rows(max(args.rows, args.calls))
    print(f"single-row latency over {args.calls:,} calls (target p99 < {TARGET_P99_US:.0f} µs):")
    p99 = latency_figures("Scorer.score", scorer.score, rows, args.calls, args.repeat)

    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    in_name, out = session.get_inputs()[0].name, [meta.output_name]
    idx = np.array([schema.index_of(n) for n in meta.feature_names])

    def plain_run(row: np.ndarray) -> float:
        return float(session.run(out, {in_name: row[idx].astype(np.float32).reshape(1, -1)})[0].flat[0])

    latency_figures("session.run (no binding)", plain_run, rows, args.calls, args.repeat)
    rate = batch_rate(scorer, rows[:args.rows], args.repeat)
    drift_cost(meta, rows[:20_000], args.repeat)
    ok = p99 < TARGET_P99_US and rate >= TARGET_ROWS_S
    print(f"targets: p99 {p99:.1f} µs {'<' if p99 < TARGET_P99_US else '>='} {TARGET_P99_US:.0f} µs, "
          f"batch {rate:,.0f} rows/s {'>=' if rate >= TARGET_ROWS_S else '<'} {TARGET_ROWS_S:,}: "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
