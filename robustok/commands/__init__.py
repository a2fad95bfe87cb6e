"""CLI subcommands; each module defines `register(subparsers)` (see `robustok.cli`)."""
