"""The `robustok` command: one subcommand per pipeline stage.

Each module in `robustok.commands` defines `register(subparsers)`, which adds its subcommand(s) and sets
`func` to a callable taking the parsed arguments. New stages add a module; this file does not change.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

if __name__ == "__main__":  # `python -m robustok.cli`: shorten OpenMP spinning before torch loads
    from robustok.entry import choose_omp_policy

    choose_omp_policy()

from robustok import __version__, commands
from robustok import distributed as rdist
from robustok.errors import RobustokError, WriteError
from robustok.hub import disk_errno, write_error


class _Parser(argparse.ArgumentParser):
    """Invalid option values (out of range, wrong type) raise `argparse.ArgumentError` for `main` to report."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="robustok", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustok {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # helpers shared by commands (e.g. _sampling_args)
            continue
        module = importlib.import_module(f"robustok.commands.{info.name}")
        module.register(sub)
    return parser


def _message(err: RobustokError) -> str:
    """The error's message; one re-raised by a data-loader worker carries the worker's traceback text, of which
    only the original message (its last line, without the exception's class name) is kept."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return last.split(": ", 1)[1] if last.startswith(("robustok.errors.", type(err).__name__)) else last


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; key=value overrides may also follow a flag (`... --control run.dir=runs/x`)."""
    args, rest = build_parser().parse_known_args(argv)
    if rest and isinstance(getattr(args, "overrides", None), list) and all("=" in a and a[0] != "-" for a in rest):
        args.overrides += rest
    elif rest:
        raise argparse.ArgumentError(None, f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    from robustok.plugins import load_plugins

    try:
        load_plugins()  # ROBUSTOK_PLUGINS: generators, backbones, data sets, features registered from outside
    except RobustokError as err:
        print(f"robustok: error: {err}", file=sys.stderr)
        return 2
    try:
        args = parse_args(argv)
    except argparse.ArgumentError as err:  # one line, like every other bad-input error
        command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
        where = "robustok" if err.argument_name == "COMMAND" else f"robustok {command}"
        print(f"{where}: error: {err}", file=sys.stderr)
        return 2
    try:
        result = args.func(args)
    except WriteError as err:  # a full or failing disk: not a bad input, so status 1
        print(f"robustok {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        code = disk_errno(err)
        if code is None:
            raise
        where = err.filename or "a file being written"  # a failed write() names no file
        print(f"robustok {args.command}: error: {write_error(code, err.filename or '.', label=where)}", file=sys.stderr)
        return 1
    except RobustokError as err:
        print(f"robustok {args.command}: error: {_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustok {args.command}: interrupted", file=sys.stderr)
        return 130
    else:
        rdist.barrier()  # ranks leave together; the process group is destroyed at exit (robustok.distributed.setup)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
