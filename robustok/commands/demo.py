"""`robustok demo` and `robustok report`: the paper's experiment end to end on the embedded default."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the paper's experiment end to end on Fashion-MNIST, with report.html",
                       description="Baseline vs robust tokenizer, pFID, generators, post-training vs the sigma=1 "
                                   "control, pFID/rFID-gFID correlations. Resumable: rerunning skips finished "
                                   "stages.")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="tiny budgets: a few minutes, numbers meaningless")
    p.add_argument("--profile", default="default", choices=["quick", "default", "full"],
                   help="budgets: default about 30 min on 2 CPU cores, full about 75 min")
    p.add_argument("--fresh", action="store_true", help="rerun every stage even if its result is on disk")
    p.set_defaults(func=run)
    r = sub.add_parser("report", help="rebuild report.html of a demo run from what is on disk")
    r.add_argument("dir", help="a demo output folder (with results.json)")
    r.set_defaults(func=run_report)


def run(args: argparse.Namespace) -> int:
    from robustok.demo import run_demo
    from robustok.validation import check_writable

    check_writable(args.out, "--out", "dir")
    run_demo(args.out, "quick" if args.quick else args.profile, fresh=args.fresh)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robustok.demo.report import write_report
    from robustok.errors import RobustokError

    if not (Path(args.dir) / "results.json").is_file():
        raise RobustokError(f"{args.dir}/results.json not found: run `robustok demo --out {args.dir}` first")
    print(f"wrote {write_report(args.dir)}")
    return 0
