"""The `robustok` command: one subcommand per pipeline stage.

Each module in `robustok.commands` defines `register(subparsers)`, which adds its subcommand(s) and sets
`func` to a callable taking the parsed arguments. New stages add a module; this file does not change.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from robustok import commands
from robustok.errors import RobustokError
from robustok.train import dist as rdist


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustok", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"robustok.commands.{info.name}")
        module.register(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; key=value overrides may also follow a flag (`... --control run.dir=runs/x`)."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and isinstance(getattr(args, "overrides", None), list) and all("=" in a and a[0] != "-" for a in rest):
        args.overrides += rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = args.func(args)
    except RobustokError as err:
        print(f"robustok {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustok {args.command}: interrupted", file=sys.stderr)
        return 130
    else:
        rdist.barrier()  # ranks leave together; the process group is destroyed at exit (train.dist.setup)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
