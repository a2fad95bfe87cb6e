"""The sampling flags of `sample` and `post-train-data`, derived from the registered generator kinds' sampling
options (`TokenGenerator.sampling_class`), and the options they make for the loaded generator.

Each field of a kind's sampling dataclass is a flag (`top_k` -> `--top-k`; a bool is a switch); its help and
choices come from the field's `metadata`, its range from the class's `BOUNDS`. A flag is only set when given, so
the generator's own defaults apply otherwise, and a flag of another kind is refused once the generator is known.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from robustok.validation import bounded


def _flag_fields() -> dict[str, tuple[dataclasses.Field, type, str, list[str]]]:
    """name -> (field, type, range rule, kinds) over the sampling classes of the registered generator kinds."""
    from robustok.generator.base import generator_class, generator_kinds

    table: dict[str, tuple[dataclasses.Field, type, str, list[str]]] = {}
    for kind in generator_kinds():
        cls = generator_class(kind).sampling_class
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in table:
                table[f.name][3].append(kind)
                continue
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            table[f.name] = (
                f,
                args[0] if typing.get_origin(tp) is typing.Union else tp,
                cls.BOUNDS.get(f.name, ""),
                [kind],
            )
    return table


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """One flag per sampling option of the registered generator kinds (the help names the kinds that have it)."""
    table = _flag_fields()
    every = len({k for *_, kinds in table.values() for k in kinds})
    group = p.add_argument_group("sampling (the options of the generator's kind; unset: its defaults)")
    for name, (f, tp, rule, kinds) in table.items():
        flag = "--" + name.replace("_", "-")
        who = "" if len(kinds) == every else ", ".join(kinds) + ": "
        default = f.default_factory() if callable(f.default_factory) else f.default
        text = f"{who}{f.metadata.get('help', name)}" + ("" if default is None else f" (default {default})")
        if tp is bool:
            group.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
            continue
        group.add_argument(
            flag,
            type=bounded(tp, rule) if rule else tp,
            default=argparse.SUPPRESS,
            choices=f.metadata.get("choices"),
            help=text,
        )


def sampling_options(args: argparse.Namespace, generator: Any) -> Any:
    """The sampling options of `generator`'s kind from the flags given (`ConfigError` for another kind's flag)."""
    from robustok.errors import ConfigError

    given = {k: v for k, v in vars(args).items() if k in _flag_fields()}
    own = {f.name for f in dataclasses.fields(generator.sampling_class)}
    other = sorted(k for k in given if k not in own)
    if other:
        flags = ", ".join("--" + k.replace("_", "-") for k in other)
        raise ConfigError(
            f"{flags}: not a sampling option of this generator (kind {generator.kind!r}; its "
            f"options: {', '.join('--' + k.replace('_', '-') for k in sorted(own))})"
        )
    return generator.sampling(**given)


def report_precision(precision: str, device: Any) -> None:
    """Print the sampling precision `precision` gives on `device` (and why) to stderr, unless it is the default
    fp32 (whose output stays as it was)."""
    import sys

    from robustok.train.precision import normalize, resolve_precision

    if normalize(precision) != "fp32":
        name, why = resolve_precision(precision, device)
        print(f"sampling precision: {name} ({why})", file=sys.stderr)
