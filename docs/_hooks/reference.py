"""MkDocs hook: generates the reference pages from the code, so they cannot drift from it.

- `reference/cli.md`: the `--help` of every `robustok` subcommand (from `robustok.cli.build_parser`).
- `reference/config.md`: every key of every stage's config schema, with its type, default, allowed range
  (`BOUNDS`) and the comment beside it in the source.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import os
import textwrap
import tokenize
from typing import Any

from mkdocs.structure.files import File, Files


def cli_page() -> str:
    from robustok.cli import build_parser

    os.environ["COLUMNS"] = "110"  # argparse wraps help to the terminal width: fix it
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = [
        "# Command line",
        "",
        "Generated from the argument parsers (`robustok COMMAND --help` prints the same). Every command exits "
        "with status 2 and one line naming the file or key on bad input.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    for name, p in sorted(sub.choices.items()):
        out += [f"## robustok {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def _comments(cls: type) -> dict[str, str]:
    """The comment beside each field of a dataclass in its source, and the comment-only lines right below it that
    are indented deeper than the field (continuations; a comment at the field's own indentation heads a group)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    by_line = {
        tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
        for tok in tokenize.generate_tokens(io.StringIO(src).readline)
        if tok.type == tokenize.COMMENT
    }
    lines = src.splitlines()
    body = ast.parse(src).body[0]
    found = {}
    for node in getattr(body, "body", []):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text, n = [by_line[node.lineno][1]] if node.lineno in by_line else [], node.end_lineno + 1
            while n in by_line and lines[n - 1].strip().startswith("#") and by_line[n][0] > node.col_offset:
                text.append(by_line[n][1])
                n += 1
            found[node.target.id] = " ".join(text)
    return found


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def config_rows(cls: type, prefix: str = "", instance: Any = None) -> list[str]:
    """Markdown rows `key | type | default | range | meaning` of a (nested) config dataclass."""
    rows, nested = [], []
    bounds = getattr(cls, "BOUNDS", {})
    comments = _comments(cls)
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name) if instance is not None else _default(f)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            nested.append((type(value), f"{key}.", value))
            continue
        shown = "(required)" if value is dataclasses.MISSING else f"`{value!r}`"
        meaning = comments.get(f.name, "").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        rows.append(f"| `{key}` | `{f.type}` | {shown} | {bounds.get(f.name, '')} | {meaning} |")
    for sub_cls, sub_prefix, sub_value in nested:
        rows += config_rows(sub_cls, sub_prefix, sub_value)
    return rows


def config_page() -> str:
    from robustok.generator.task import GeneratorTrainConfig
    from robustok.posttrain.train import PostTrainConfig
    from robustok.presets import preset_names
    from robustok.tokenizer.train import TokenizerTrainConfig

    out = [
        "# Config keys",
        "",
        "Generated from the config schemas. A stage reads a YAML file (or a preset shipped with the package: "
        "`robustok train-tokenizer fmnist-robust`) over these defaults, then `key=value` overrides. Unknown "
        "keys, wrong types and values outside the range are errors naming the key.",
        "",
    ]
    for title, command, schema in (
        ("Main training of a tokenizer", "train-tokenizer", TokenizerTrainConfig),
        ("Training a generator", "train-generator", GeneratorTrainConfig),
        ("Decoder post-training", "post-train", PostTrainConfig),
    ):
        presets = ", ".join(f"`{n}`" for n in preset_names(schema.PRESETS))
        out += [
            f"## {title} (`robustok {command}`)",
            "",
            f"Presets: {presets}.",
            "",
            "| key | type | default | range | meaning |",
            "|---|---|---|---|---|",
            *config_rows(schema),
            "",
        ]
    return "\n".join(out)


def on_files(files: Files, config: Any) -> Files:
    for path, make in (("reference/cli.md", cli_page), ("reference/config.md", config_page)):
        files.append(File.generated(config, path, content=make()))
    return files
