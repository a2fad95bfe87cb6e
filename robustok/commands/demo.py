"""`robustok demo` and `robustok report`: the paper's experiment end to end on the embedded default."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the paper's experiment end to end on Fashion-MNIST, with report.html",
        description="Baseline vs robust tokenizer, pFID, generators, post-training vs the sigma=1 "
        "control, pFID/rFID-gFID correlations. Resumable: rerunning skips finished "
        "stages.",
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="tiny budgets: a few minutes, numbers meaningless")
    p.add_argument(
        "--profile",
        default=None,
        choices=["quick", "default", "full"],
        help="budgets: default about 30 min on 2 fast CPU cores, full about 75 min (the demo prints "
        "its own estimate for this machine first)",
    )
    p.add_argument(
        "--budget",
        default=None,
        metavar="TIME",
        help="a wall-time budget (30m, 1h30m, 90s): without --profile, run the largest profile that "
        "fits; with one, refuse if it does not fit",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="only print the expected wall time of each profile on this machine (a few seconds)",
    )
    p.add_argument("--fresh", action="store_true", help="rerun every stage even if its result is on disk")
    p.set_defaults(func=run)
    r = sub.add_parser("report", help="rebuild report.html of a demo run from what is on disk")
    r.add_argument("dir", help="a demo output folder (with results.json)")
    r.set_defaults(func=run_report)


def run(args: argparse.Namespace) -> int:
    from robustok.demo import run_demo
    from robustok.demo.estimate import plan_demo
    from robustok.extras import require
    from robustok.validation import check_writable

    check_writable(args.out, "--out", "dir")
    require("matplotlib", "the demo's report.html")  # before a run of minutes, not after it
    profile = plan_demo("quick" if args.quick else args.profile, args.budget, args.estimate)
    if profile is not None:
        run_demo(args.out, profile, fresh=args.fresh)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robustok.demo.report import write_report
    from robustok.errors import RobustokError

    if not (Path(args.dir) / "results.json").is_file():
        raise RobustokError(f"{args.dir}/results.json not found: run `robustok demo --out {args.dir}` first")
    print(f"wrote {write_report(args.dir)}")
    return 0
