"""The `robustok` command: one subcommand per pipeline stage.

Each module in `robustok.commands` defines `register(subparsers)`, which adds its subcommand(s) and sets
`func` to a callable taking the parsed arguments. New stages add a module; this file does not change.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

if __name__ == "__main__":      # `python -m robustok.cli`: pick OpenMP's wait policy before torch loads
    from robustok.entry import choose_omp_policy

    choose_omp_policy()

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
