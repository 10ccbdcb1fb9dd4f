"""The depthd command line: `depthd replay`, `features`, `train`, `run`, `record`, `kill`, `resume`,
`status`, `check-config`.

Exit codes: 0 success, 2 bad input (a replay file), 3 bad configuration (or model), 4 the control
endpoint (no daemon, token refused), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from daemon import __version__
from daemon.errors import ConfigError, ControlError, InputError, ModelError

if TYPE_CHECKING:
    from daemon.replay import Replay, ReplayResult

EXIT_OK, EXIT_UNEXPECTED, EXIT_INPUT, EXIT_CONFIG, EXIT_CONTROL = 0, 1, 2, 3, 4
DEFAULT_CONFIG = "config.toml"


def _speed(text: str) -> float:
    value = float(text)
    if not (value >= 0 and value < float("inf")):
        raise argparse.ArgumentTypeError("speed must be 0 (as fast as possible) or a positive factor")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="depthd", description="L2 order-book trading daemon")
    parser.add_argument("--version", action="version", version=f"depthd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rp = sub.add_parser("replay", help="replay recorded sessions through the trading path (backtest)")
    rp.add_argument("files", nargs="+", metavar="FILE", help=".rec.zst recordings or .ndjson[.gz] normalized L2")
    rp.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    rp.add_argument("--report", metavar="DIR", help="write DIR/report.json and DIR/run.json")
    rp.add_argument("--speed", type=_speed, default=0.0,
                    help="0 = as fast as possible (default); X = paced at X times recorded time")
    rp.add_argument("--skip-bad", action="store_true", help="count, log and skip malformed lines")
    rp.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    fp = sub.add_parser("features", help="write the sampled feature rows of a replay to Parquet or CSV")
    fp.add_argument("files", nargs="+", metavar="FILE", help=".rec.zst recordings or .ndjson[.gz] normalized L2")
    fp.add_argument("--out", required=True, metavar="PATH", help="output file ending in .parquet or .csv")
    fp.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    fp.add_argument("--skip-bad", action="store_true", help="count, log and skip malformed lines")
    fp.add_argument("--quiet", action="store_true", help="no summary")

    from daemon.model.train import add_arguments as add_train_arguments

    add_train_arguments(sub.add_parser("train", help="train a model on replayed features and export it to ONNX"))

    from daemon.control_client import add_kill_arguments, add_resume_arguments, add_status_arguments

    add_kill_arguments(sub.add_parser("kill", help="halt the running daemon: cancel its orders (and flatten)"))
    add_resume_arguments(sub.add_parser("resume", help="let a halted daemon trade again"))
    add_status_arguments(sub.add_parser("status", help="the running daemon's trading state, positions, PnL"))

    run = sub.add_parser("run", help="trade (paper) on the live feed of [feed]; records too if [record] enabled")
    run.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    run.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until SIGTERM)")

    rec = sub.add_parser("record", help="record the live feed of [feed] (no trading) for replay")
    rec.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    rec.add_argument("--out", metavar="DIR", help="directory of the recordings (default: [record] dir)")
    rec.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until SIGTERM)")

    cc = sub.add_parser("check-config", help="validate a config file")
    cc.add_argument("--config", default=DEFAULT_CONFIG, help="config file (default: %(default)s)")
    return parser


def cmd_check_config(args: argparse.Namespace) -> int:
    """`depthd check-config`: load and validate, say OK or raise ConfigError."""
    from daemon.config import load_settings

    settings = load_settings(args.config)
    print(f"{args.config}: OK (mode {settings.daemon.mode}, strategy {settings.strategy.name}, "
          f"{len(settings.instruments)} instrument(s))")
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    """`depthd replay`: replay the files, print a summary, write the reports."""
    from daemon.config import load_settings
    from daemon.logs import configure_logging
    from daemon.replay import Replay
    from daemon.report import build_report, build_run_info, summary_lines, write_json, write_text
    from daemon.report_html import render_html

    settings = load_settings(args.config)
    configure_logging(settings.daemon.log_level)
    show_progress = not args.quiet and sys.stderr.isatty()
    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(unit=" msg", unit_scale=True, desc="replay", file=sys.stderr, mininterval=0.5)
    try:
        replay = Replay(settings, list(args.files), skip_bad=args.skip_bad,
                        progress=bar.update if bar is not None else None)
        result = _run(replay, args.speed)
    finally:
        if bar is not None:
            bar.close()
    report = build_report(result, settings.report.top_levels)
    run = build_run_info(result)
    if args.report:
        out = Path(args.report)
        write_json(out / "report.json", report)
        write_json(out / "run.json", run)
        write_text(out / "report.html", render_html(report))
    if not args.quiet:
        for line in summary_lines(report, run):
            print(line)
        if args.report:
            print(f"report: {Path(args.report) / 'report.json'}")
    return EXIT_OK


def cmd_features(args: argparse.Namespace) -> int:
    """`depthd features`: replay the files through the configured path and write every sample."""
    from daemon.config import load_settings
    from daemon.logs import configure_logging
    from daemon.model.dataset import collect_features

    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: must end in .parquet or .csv")
    settings = load_settings(args.config)
    configure_logging(settings.daemon.log_level)
    table, replay = collect_features(settings, list(args.files), skip_bad=args.skip_bad)
    table.write(out)
    if not args.quiet:
        stats = replay.stats
        live = int(table.live.sum())
        complete = int(table.complete_rows().sum())
        rate = stats.messages / stats.wall_seconds if stats.wall_seconds else 0.0
        print(f"{len(table)} rows x {len(table.names)} features (schema v{table.schema_version}), "
              f"{live} LIVE, {complete} complete; {stats.messages} messages in {stats.wall_seconds:.2f} s "
              f"({rate:,.0f} msg/s)")
        print(f"features: {out}")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """`depthd train`: see daemon/model/train.py."""
    from daemon.model.train import cmd_train as run

    return run(args)


def cmd_run(args: argparse.Namespace, record_only: bool = False) -> int:
    """`depthd run` / `depthd record`: a live session until SIGINT/SIGTERM or --duration."""
    from daemon.config import load_settings
    from daemon.live import LiveSession
    from daemon.logs import configure_logging

    settings = load_settings(args.config)
    configure_logging(settings.daemon.log_level, to="stdout")  # a service: journald reads stdout
    out = getattr(args, "out", None)

    async def main() -> LiveSession:
        import signal

        session = LiveSession(settings, record_only=record_only, record_dir=out, config_path=args.config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, session.reload)
        if args.duration > 0:
            loop.call_later(args.duration, stop.set)
        await session.run(stop)
        return session

    try:
        import uvloop

        session = uvloop.run(main())
    except ImportError:
        session = asyncio.run(main())
    from daemon.live_summary import summary_lines

    for line in summary_lines(session):  # stdout carries the JSON log lines: the summary goes beside them
        print(line, file=sys.stderr)
    return EXIT_OK


def _control(name: str) -> Callable[[argparse.Namespace], int]:
    """`depthd kill/resume/status`: the control client's command of that name."""

    def run(args: argparse.Namespace) -> int:
        from daemon import control_client

        return getattr(control_client, name)(args)

    return run


def _run(replay: Replay, speed: float) -> ReplayResult:
    """Fast replays run straight through; paced ones, and any with the control endpoint on, run on the
    event loop (uvloop if present)."""
    if speed == 0 and not replay.settings.control.enabled:
        return replay.run()
    try:
        import uvloop

        return uvloop.run(replay.run_async(speed))
    except ImportError:
        return asyncio.run(replay.run_async(speed))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `depthd` console script and `python -m daemon`; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler = {"replay": cmd_replay, "features": cmd_features, "train": cmd_train, "run": cmd_run,
               "record": lambda a: cmd_run(a, record_only=True), "kill": _control("cmd_kill"),
               "resume": _control("cmd_resume"), "status": _control("cmd_status"),
               "check-config": cmd_check_config}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"depthd: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"depthd: input error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except ModelError as exc:
        print(f"depthd: model error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ControlError as exc:
        print(f"depthd: control error: {exc}", file=sys.stderr)
        return EXIT_CONTROL
    except KeyboardInterrupt:
        print("depthd: interrupted", file=sys.stderr)
        return 130
