"""`depthd train`: label the feature rows, evaluate walk-forward, fit the final model, export ONNX.

The rows come from replaying recordings through the live path (daemon.model.dataset) or from a
feature table written by `depthd features`. Features are cast to float32 before training, exactly
as the scorer feeds them to onnxruntime, so the exported model and the native one agree.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon import __version__
from daemon.errors import ConfigError, InputError
from daemon.features import schema
from daemon.features.table import FeatureTable
from daemon.model import export
from daemon.model.histograms import reference_histograms
from daemon.model.labels import INTERVAL_KEY, Label, label_values, parse_label
from daemon.model.metadata import ModelMeta
from daemon.model.walkforward import MIN_TRAIN_ROWS, evaluate, mean_metrics, walk_forward

TRAINERS = ("lightgbm", "sklearn")
SEED = 20240611
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 200, "num_leaves": 15, "learning_rate": 0.05, "min_child_samples": 50,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0,
    "random_state": SEED, "n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1,
}
SKLEARN_PARAMS = {"regression": "SimpleImputer(median) + StandardScaler + Ridge(alpha=1.0)",
                  "binary": "SimpleImputer(median) + StandardScaler + LogisticRegression(C=1.0)"}
TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class TrainResult:
    """A trained, exported and parity-checked model, with its walk-forward evaluation."""

    meta: ModelMeta
    onnx_bytes: bytes
    folds: tuple[dict[str, float], ...]
    mean: dict[str, float]
    holdout: dict[str, float]
    train_rows: int
    parity_max_abs_diff: float
    throughput_rows_s: float
    model: Any


def select_features(names: Sequence[str], features: Sequence[str] | None = None,
                    exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """The model inputs: `features` (else every non-price schema feature in the table) minus `exclude`."""
    units = {f.name: f.unit for f in schema.FEATURES}
    unknown = [n for n in [*(features or ()), *exclude] if n not in names]
    if unknown:
        raise ConfigError(f"unknown feature(s) {', '.join(unknown)}; the table has: {', '.join(names)}")
    chosen = list(features) if features else [n for n in names if units.get(n) != "price"]
    if len(set(chosen)) != len(chosen):
        raise ConfigError("--features lists a feature twice")
    chosen = [n for n in chosen if n not in set(exclude)]
    if not chosen:
        raise ConfigError("no features left to train on (check --features / --exclude)")
    return tuple(chosen)


def make_model(trainer: str, task: str) -> Any:
    """A fresh estimator: LightGBM (NaN kept), or impute + scale + Ridge / LogisticRegression."""
    if trainer == "lightgbm":
        import lightgbm as lgb

        return (lgb.LGBMClassifier if task == "binary" else lgb.LGBMRegressor)(**LGBM_PARAMS)
    if trainer == "sklearn":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        head = LogisticRegression(C=1.0, max_iter=1000) if task == "binary" else Ridge(alpha=1.0)
        return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                         ("scale", StandardScaler()), ("model", head)])
    raise ConfigError(f"unknown trainer {trainer!r}; want one of {', '.join(TRAINERS)}")


def trainer_name(trainer: str) -> str:
    """The trainer and its library version, e.g. `lightgbm 4.7.0`."""
    if trainer == "lightgbm":
        import lightgbm as lgb

        return f"lightgbm {lgb.__version__}"
    import sklearn

    return f"sklearn {sklearn.__version__}"


def fit(trainer: str, task: str, x: np.ndarray, y: np.ndarray) -> Any:
    """Fit a fresh model on float32-valued rows (a LightGBM model is then snapped to float32, see export)."""
    model = make_model(trainer, task)
    model.fit(x, y.astype(np.int64) if task == "binary" else y)
    if trainer == "lightgbm":
        export.snap_to_float32(model)
    return model


def predict(model: Any, x: np.ndarray, task: str) -> np.ndarray:
    """The native model's score: the prediction, or P(up) for a binary model."""
    return np.asarray(model.predict_proba(x)[:, 1] if task == "binary" else model.predict(x), dtype=np.float64)


def table_hash(table: FeatureTable) -> str:
    """sha256 over a table's names, schema version, cadence and column bytes: names the training data."""
    h = hashlib.sha256()
    h.update(",".join(table.names).encode() + b"\0" + str(table.schema_version).encode() + b"\0")
    h.update(table.meta.get(INTERVAL_KEY, "").encode() + b"\0")
    h.update(np.ascontiguousarray(table.ts, dtype="<i8").tobytes())
    h.update("\0".join(map(str, table.symbol)).encode() + b"\0")
    h.update(np.ascontiguousarray(table.live, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(table.values, dtype="<f8").tobytes())
    return h.hexdigest()


def model_inputs(table: FeatureTable, names: Sequence[str]) -> np.ndarray:
    """The chosen columns as the scorer sees them: float32 values (inf -> NaN), held as float64."""
    x = table.values[:, [table.names.index(n) for n in names]].astype(np.float32)
    x[~np.isfinite(x)] = np.nan
    return x.astype(np.float64)


def train_table(table: FeatureTable, label: str | Label, trainer: str = "lightgbm", folds: int = 5,
                features: Sequence[str] | None = None, data_hash: str | None = None, exclude: Sequence[str] = (),
                min_train_rows: int = MIN_TRAIN_ROWS, bench_rows: int = 100_000) -> TrainResult:
    """Train and export a model from a feature table: walk-forward metrics, final model, parity-checked ONNX."""
    lab = label if isinstance(label, Label) else parse_label(label)
    if trainer not in TRAINERS:
        raise ConfigError(f"unknown trainer {trainer!r}; want one of {', '.join(TRAINERS)}")
    names = select_features(table.names, features, exclude)
    target, ret = label_values(table, lab)
    rows = np.flatnonzero(np.isfinite(target) & table.live)  # a book not in sync is never traded on
    x, y, ret, ts = model_inputs(table, names)[rows], target[rows], ret[rows], table.ts[rows]
    plan = walk_forward(ts, lab.horizon_ns, folds, min_train_rows)
    fold_metrics, model = [], None
    for fold in plan.folds:
        model = fit(trainer, lab.task, x[fold.train], y[fold.train])
        pred = predict(model, x[fold.test], lab.task)
        fold_metrics.append({"fold": fold.index, "train_rows": len(fold.train),
                             **evaluate(pred, y[fold.test], ret[fold.test], lab.task)})
    # the last fold trains on every block but the last and tests on it: that model is the final one
    final, holdout = plan.final, fold_metrics[-1]
    x_hold = x[final.test]
    onx = export.to_onnx(model, trainer, lab.task, len(names))
    parity = export.check_parity(onx.SerializeToString(), x_hold, predict(model, x_hold, lab.task), lab.task)
    mean = mean_metrics([{k: v for k, v in m.items() if k != "fold"} for m in fold_metrics])
    output_name, output_column = export.output_of(lab.task)
    meta = ModelMeta(
        feature_names=names, schema_version=table.schema_version, label=lab.name, horizon_ms=lab.horizon_ms,
        task=lab.task, output_name=output_name, output_column=output_column,
        data_hash=data_hash or table_hash(table), trainer=trainer_name(trainer),
        metrics={"folds": fold_metrics, "mean": mean, "holdout": holdout},
        histograms=reference_histograms(x[final.train], names), depthd_version=__version__,
        extra={"folds": folds, "purge_ms": lab.horizon_ms, "rows": len(rows), "train_rows": len(final.train),
               "holdout_rows": len(final.test), "holdout_start_ns": final.test_start_ns,
               "symbols": sorted(map(str, np.unique(table.symbol))), "parity_max_abs_diff": parity,
               "params": LGBM_PARAMS if trainer == "lightgbm" else SKLEARN_PARAMS[lab.task]},
    )
    data = export.with_metadata(onx, meta)
    rate = export.throughput(data, x_hold, lab.task, min_rows=bench_rows)
    return TrainResult(meta, data, tuple(fold_metrics), mean, holdout, len(final.train), parity, rate, model)


def read_tables(paths: Sequence[str | Path]) -> FeatureTable:
    """Read feature tables (.parquet/.csv) and stack them; they must share features, version and cadence."""
    tables = [FeatureTable.read(p) for p in paths]
    first = tables[0]
    for p, t in zip(paths[1:], tables[1:], strict=True):
        if (t.names, t.schema_version, t.meta.get(INTERVAL_KEY)) != (first.names, first.schema_version,
                                                                     first.meta.get(INTERVAL_KEY)):
            raise InputError(str(p), None, f"feature table does not match {paths[0]} (features, schema version "
                                           "or sample interval differ)")
    if len(tables) == 1:
        return first
    return FeatureTable(first.names, first.schema_version, np.concatenate([t.ts for t in tables]),
                        np.concatenate([t.symbol for t in tables]), np.concatenate([t.live for t in tables]),
                        np.concatenate([t.values for t in tables]), dict(first.meta))


def _csv(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `depthd train` to its subparser."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="recordings / normalized L2 files to replay, or feature tables (.parquet/.csv) "
                             "written by `depthd features`")
    parser.add_argument("--config", default="config.toml", help="config file (default: %(default)s)")
    parser.add_argument("--label", required=True, help="what to predict: mid_ret_bps@<H> or mid_up@<H>, "
                                                       "H like 500ms, 1s, 10s, 1m")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx", help="the model file to write")
    parser.add_argument("--trainer", choices=TRAINERS, default="lightgbm", help="(default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="walk-forward folds (default: %(default)s)")
    parser.add_argument("--features", metavar="A,B,...", help="features to use (default: every non-price feature)")
    parser.add_argument("--exclude", metavar="A,B,...", help="features to leave out")
    parser.add_argument("--skip-bad", action="store_true", help="count, log and skip malformed input lines")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no metrics table and no summary")


def cmd_train(args: argparse.Namespace) -> int:
    """`depthd train`: build the dataset, train, print walk-forward metrics, write the ONNX model."""
    label = parse_label(args.label)
    if Path(args.out).suffix.lower() != ".onnx":
        raise ConfigError(f"--out {args.out}: the model file must end in .onnx")
    files = list(args.files)
    is_table = [Path(f).suffix.lower() in TABLE_SUFFIXES for f in files]
    if all(is_table):
        table, data_hash = read_tables(files), None
    elif any(is_table):
        raise ConfigError("give either feature tables (.parquet/.csv) or recordings to replay, not both")
    else:
        table, data_hash = _replay(args, files)
    result = train_table(table, label, args.trainer, args.folds, _csv(args.features) or None, data_hash,
                         exclude=_csv(args.exclude))
    export.write_model(result.onnx_bytes, args.out)
    if not args.quiet:
        for line in metrics_lines(result):
            print(line)
        print(summary_line(result, args.out))
    return 0


def _replay(args: argparse.Namespace, files: list[str]) -> tuple[FeatureTable, str]:
    from daemon.config import load_settings
    from daemon.logs import configure_logging
    from daemon.model.dataset import collect_features, inputs_hash

    settings = load_settings(args.config)
    configure_logging(settings.daemon.log_level)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" msg", unit_scale=True, desc="features", file=sys.stderr, mininterval=0.5)
    try:
        table, _ = collect_features(settings, files, skip_bad=args.skip_bad,
                                    progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    return table, inputs_hash(files, settings)


def metrics_lines(result: TrainResult) -> list[str]:
    """The out-of-sample metrics as a text table: one line per fold, the mean and the hold-out."""
    binary = result.meta.task == "binary"
    last = ("logloss", "accuracy") if binary else ("rmse",)
    head = f"{'fold':>7} {'train':>8} {'test':>8} {'ic':>7} {'hit':>6} " + " ".join(f"{k:>8}" for k in last)

    def row(tag: str, m: dict[str, float], train: float) -> str:
        return (f"{tag:>7} {train:>8.0f} {m['rows']:>8.0f} {m['ic']:>7.3f} {m['hit_rate']:>6.3f} "
                + " ".join(f"{m[k]:>8.4f}" for k in last))

    lines = [head] + [row(str(int(m["fold"])), m, m["train_rows"]) for m in result.folds]
    lines.append(row("mean", result.mean, result.mean["train_rows"]))
    lines.append(row("holdout", result.holdout, result.train_rows))
    return lines


def summary_line(result: TrainResult, out: str | Path) -> str:
    """One line saying what was written and how good it is."""
    m = result.meta
    return (f"model: {out} ({m.trainer}, {len(m.feature_names)} features, {m.label}, {result.train_rows} train rows; "
            f"holdout IC {result.holdout['ic']:.3f}, hit {result.holdout['hit_rate']:.3f}; "
            f"onnx parity {result.parity_max_abs_diff:.1e}; {result.throughput_rows_s:,.0f} rows/s)")
