"""Command line: argument parsing and exit codes, nothing else.

Exit codes: 0 done; 1 `compare` found a regression; 2 bad input (one line on stderr, no traceback), which
includes an output folder that cannot be written (before the first trial, or a full disk mid-run: the records
written so far are intact); 130 / 143 a run stopped by SIGINT / SIGTERM (what finished is kept; continue
with --resume). See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from .progress import make_console

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own convention too)
        words = self.prog.split()
        see = "harness --help" if len(words) < 2 else f"harness {words[-1]} --help"
        self.exit(EXIT_BAD_INPUT, f"harness: error: {one_line(message)} (see {see})\n")


def one_line(text: str) -> str:
    """A message for the user's terminal as one line: newlines and other control characters (from a name or
    a path in the grid) are shown escaped, never acted on."""
    out = []
    for ch in str(text):
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 and ch != "\t" or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _percent(text: str) -> float:
    from .compare import parse_percent

    try:
        return parse_percent(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers, got {text!r}") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"expected 1 to 256 workers, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description="Resource-aware benchmarking of transformer fine-tuning.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run a grid of trials, each in its own process, then report")
    run.add_argument("grid", help="grid file (TOML)")
    run.add_argument("--out", help="run folder (default results/<name>-<UTC timestamp>)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR: finished trials are skipped")
    run.add_argument("--executor", choices=["local", "ray"], default="local")
    run.add_argument("--workers", type=_workers, default=1,
                     help="local executor: trials at once (default 1: a benchmark shares no machine unless told to)")
    run.add_argument("--address", help="Ray cluster address (with --executor ray; default: start a local one)")
    run.add_argument("--max-batch", action="store_true", help="search the largest batch that fits the memory budget")
    run.add_argument("--no-report", action="store_true", help="do not render the report at the end")

    rep = sub.add_parser("report", help="render the report of one or more run folders")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", help="report folder (default reports/<run name>/)")

    cmp_ = sub.add_parser("compare", help="compare two run folders; exit 1 on a regression")
    cmp_.add_argument("base", metavar="BASE")
    cmp_.add_argument("new", metavar="NEW")
    cmp_.add_argument("--max-slowdown", type=_percent, default=0.10, metavar="PCT")
    cmp_.add_argument("--max-memory-growth", type=_percent, default=0.10, metavar="PCT")
    cmp_.add_argument("--max-accuracy-drop", type=float, default=0.01, metavar="ABS")
    cmp_.add_argument("--ignore", nargs="*", default=[], metavar="SETTING",
                      help="settings left out when pairing trials (e.g. strategy, to compare lab with fast)")

    exp = sub.add_parser("export-benchmark", help="write a run's trials as pytest-benchmark JSON")
    exp.add_argument("run_dir", metavar="RUN_DIR")
    exp.add_argument("--out", help="output file or pytest-benchmark storage folder")
    return parser


EXIT_SIGINT = 130


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    console = make_console()
    try:
        return dispatch(args, console)
    except BadInput as exc:
        print(f"harness: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # Ctrl-C before the run's own handler is in place (while checking the grid)
        print("harness: interrupted (SIGINT)", file=sys.stderr)
        return EXIT_SIGINT


_BAD_INPUT = (("harness.config", "ConfigError"), ("harness.core.preflight", "PreflightError"),
              ("harness.store", "StoreError"), ("harness.core.data", "DataError"), ("harness.core.models", "ModelError"))


def _bad_input_types() -> tuple[type[BaseException], ...]:
    """The bad-input exception types of the modules loaded so far (evaluated when an exception is matched: a
    module that was never imported raised nothing, and importing it here would cost torch's import time)."""
    found = []
    for module, name in _BAD_INPUT:
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            found.append(getattr(mod, name))
    return tuple(found)


def _refuse_empty_names(args: argparse.Namespace) -> None:
    """An empty file or folder name is an unset shell variable far more often than the current folder."""
    for dest, flag in (("grid", "the grid file"), ("out", "--out"), ("resume", "--resume"), ("run_dir", "RUN_DIR"),
                       ("base", "BASE"), ("new", "NEW")):
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            raise BadInput(f"{flag} is an empty name (an unset shell variable?); give a path")
    for value in getattr(args, "run_dirs", None) or []:
        if not value.strip():
            raise BadInput("RUN_DIR is an empty name (an unset shell variable?); give a run folder")


def dispatch(args: argparse.Namespace, console: Console) -> int:
    _refuse_empty_names(args)
    try:
        if args.command == "run":
            return _run(args, console)
        if args.command == "report":
            from .run import render_and_summarise

            render_and_summarise([Path(d) for d in args.run_dirs], args.out, console)
            return 0
        if args.command == "compare":
            from .compare import Thresholds, compare_runs, print_comparison

            result = compare_runs(args.base, args.new, Thresholds(args.max_slowdown, args.max_memory_growth,
                                                                   args.max_accuracy_drop), ignore=args.ignore)
            print_comparison(result, console)
            return 1 if result.failed else 0
        if args.command == "export-benchmark":
            from .export import export_benchmark

            path = export_benchmark(args.run_dir, args.out)
            console.print(str(path))
            return 0
    except _bad_input_types() as exc:
        raise BadInput(str(exc)) from None
    except ValueError as exc:  # thresholds out of range and the like
        raise BadInput(str(exc)) from None
    raise BadInput(f"unknown command {args.command!r}")


def _run(args: argparse.Namespace, console: Console) -> int:
    if args.workers > 1 and args.executor != "local":
        raise BadInput("--workers is for the local executor; Ray schedules by the resources each trial asks for")
    if args.address and args.executor != "ray":
        raise BadInput("--address names a Ray cluster; give it with --executor ray")
    if args.resume is not None and args.out is not None:
        raise BadInput("--out and --resume both name a run folder; give one")
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BadInput('--executor ray needs Ray: pip install "harness[ray]" (or pip install "ray[default]")') from None
    from .run import run_grid

    outcome = run_grid(args.grid, out=args.out, resume=args.resume, executor=args.executor, workers=args.workers,
                       address=args.address, console=console, report=not args.no_report, max_batch=args.max_batch)
    return outcome.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
