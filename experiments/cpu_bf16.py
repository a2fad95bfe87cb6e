"""Issue 24: what CPU bf16 autocast costs in tokenizer quality, next to the fp32 seed spread.

    python experiments/cpu_bf16.py --out /work/runs/cpu-bf16 [--seeds 0,1,2] [--record]
    python experiments/cpu_bf16.py --markdown experiments/results/cpu-bf16.json

The full main training of configs/tokenizer/fmnist-robust.yaml (2400 steps, `run.deterministic=true`) in fp32
(`train.amp=off`) and in bf16 (`train.amp=bf16`), seeds interleaved (fp32 s0, bf16 s0, fp32 s1, ...), each
followed by `robustok eval-tokenizer TOK --data fashion-mnist:test --metrics psnr,ssim,rfid,pfid,usage
--num-images 10000 --features fmnist --json`. Everything goes through the CLI; a finished training or evaluation
is skipped and an interrupted training resumes, so the study can be restarted. With `--record`, every finished
run is written at once to experiments/results/cpu-bf16.json (or `--result`), with the verdict once both
precisions have two seeds. The training speed (median img/s over the logged steps) is recorded too, but it was
measured on a shared, busy machine: it is a label, not a benchmark (benchmarks/train_tokenizer.py measures speed).

Endpoint and criterion, fixed before the run:
- endpoint: per metric, mean over seeds of the final EMA tokenizer's PSNR, SSIM, codebook usage, rFID-fmnist and
  pFID-fmnist on the 10k Fashion-MNIST test images; Delta = mean(bf16) - mean(fp32), signed so that > 0 is worse.
- bf16 becomes the `auto` default on CPUs with bf16 matrix units only if, for EVERY metric, bf16 is not worse by
  more than max(2 x the fp32 seed sd, a tolerance): PSNR 0.10 dB, SSIM 0.002, usage 0.02 (absolute), rFID and
  pFID 5% of the fp32 mean; AND, whatever the spread, rFID and pFID are not worse by more than 10% of the fp32
  mean. A bf16 that is better passes (the question is its cost). Needs >= 2 seeds per precision; otherwise the
  verdict is "undecided" and `auto` stays fp32 on CPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "experiments" / "results" / "cpu-bf16.json"
CONFIG = "configs/tokenizer/fmnist-robust.yaml"
PRECISIONS = {"fp32": "'off'", "bf16": "bf16"}  # quoted: YAML reads a bare off as False
METRICS = ("psnr", "ssim", "codebook_usage", "rfid", "pfid")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "codebook_usage": True, "rfid": False, "pfid": False}
# metric -> (absolute tolerance, relative tolerance of the fp32 mean); a hard cap of 10% for the FIDs
TOLERANCE = {
    "psnr": (0.10, 0.0),
    "ssim": (0.002, 0.0),
    "codebook_usage": (0.02, 0.0),
    "rfid": (0.0, 0.05),
    "pfid": (0.0, 0.05),
}
FID_CAP = 0.10
CONTENTION = "measured on a shared 2-core machine under contention (6 agents, OMP_NUM_THREADS=1): not a benchmark"


def robustok(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "robustok.cli", *map(str, args)], check=True, cwd=ROOT)


def run_one(precision: str, seed: int, out: Path, steps: int, num_images: int) -> dict:
    """Train (or resume, or reuse) one tokenizer and evaluate it; return its record."""
    run = out / f"{precision}-s{seed}"
    tok = run / "tokenizer"
    if not (tok / "model.safetensors").is_file():
        robustok(
            "train-tokenizer",
            CONFIG,
            f"run.dir={run}",
            f"run.seed={seed}",
            f"train.amp={PRECISIONS[precision]}",
            f"train.steps={steps}",
            f"loss.disc_start={steps // 2}",
            f"run.ckpt_every={max(steps // 6, 1)}",
            "run.sample_every=0",
            "run.deterministic=true",
            *(["--resume"] if (run / "checkpoints").is_dir() else []),
        )
    ev = run / "eval.json"
    if not ev.is_file():
        robustok(
            "eval-tokenizer",
            tok,
            "--data",
            "fashion-mnist:test",
            "--metrics",
            "psnr,ssim,rfid,pfid,usage",
            "--num-images",
            num_images,
            "--features",
            "fmnist",
            "--device",
            "cpu",
            "--json",
            ev,
        )
    res = json.loads(ev.read_text())
    return {
        "precision": precision,
        "seed": seed,
        "steps": steps,
        "num_images": res["num_images"],
        **{m: res[m] for m in METRICS},
        "train_images_per_s": _speed(run / "metrics.jsonl"),
    }


def _speed(path: Path) -> float | None:
    """Median logged training img/s of a run (None when the log has none)."""
    if not path.is_file():
        return None
    rates = [json.loads(line).get("images_per_s") for line in path.read_text().splitlines() if line.strip()]
    rates = [r for r in rates if r]
    return statistics.median(rates) if rates else None


def verdict(runs: list[dict]) -> dict:
    """Apply the criterion fixed in the docstring to the finished runs."""
    by = {p: [r for r in runs if r["precision"] == p] for p in PRECISIONS}
    if min(len(v) for v in by.values()) < 2:
        return {"decision": "undecided", "why": "fewer than 2 seeds in a precision"}
    rows, ok = {}, True
    for m in METRICS:
        f32 = [r[m] for r in by["fp32"]]
        b16 = [r[m] for r in by["bf16"]]
        mean32, sd32 = statistics.mean(f32), statistics.stdev(f32)
        worse = (mean32 - statistics.mean(b16)) if HIGHER_IS_BETTER[m] else (statistics.mean(b16) - mean32)
        absolute, relative = TOLERANCE[m]
        allowed = max(2 * sd32, absolute, relative * abs(mean32))
        passed = worse <= allowed and (m not in ("rfid", "pfid") or worse <= FID_CAP * abs(mean32))
        ok &= passed
        rows[m] = {
            "fp32_mean": mean32,
            "fp32_sd": sd32,
            "bf16_mean": statistics.mean(b16),
            "bf16_sd": statistics.stdev(b16),
            "worse_by": worse,
            "allowed": allowed,
            "pass": passed,
        }
    return {
        "decision": "bf16 for auto on CPUs with bf16 units" if ok else "auto stays fp32 on CPUs",
        "pass": ok,
        "metrics": rows,
    }


def markdown(result: dict) -> str:
    """Per-run and per-precision tables of a recorded result."""
    lines = [
        "| precision | seed | PSNR | SSIM | usage | rFID-fmnist | pFID-fmnist | train img/s (contended) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(result["runs"], key=lambda r: (r["precision"], r["seed"])):
        speed = f"{r['train_images_per_s']:.0f}" if r.get("train_images_per_s") else "-"
        lines.append(
            f"| {r['precision']} | {r['seed']} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
            f"{r['codebook_usage']:.4f} | {r['rfid']:.3f} | {r['pfid']:.3f} | {speed} |"
        )
    v = result.get("verdict", {})
    if "metrics" in v:
        lines += [
            "",
            "| metric | fp32 mean ± sd | bf16 mean ± sd | bf16 worse by | allowed | pass |",
            "|---|---|---|---|---|---|",
        ]
        for m, row in v["metrics"].items():
            lines.append(
                f"| {m} | {row['fp32_mean']:.4f} ± {row['fp32_sd']:.4f} | {row['bf16_mean']:.4f} ± "
                f"{row['bf16_sd']:.4f} | {row['worse_by']:+.4f} | {row['allowed']:.4f} | "
                f"{'yes' if row['pass'] else 'NO'} |"
            )
    lines += ["", f"verdict: {v.get('decision', 'undecided')}; speeds {result.get('speed_note', CONTENTION)}"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/cpu-bf16", help="run folder (trainings and evaluations)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of training seeds, run in this order")
    p.add_argument("--steps", type=int, default=2400, help="training steps (2400: the config's full run)")
    p.add_argument("--num-images", type=int, default=10_000, help="evaluation images")
    p.add_argument("--record", action="store_true", help="write the results file after each finished run")
    p.add_argument("--result", default=str(RESULT), help=f"results file of --record (default {RESULT})")
    p.add_argument("--markdown", metavar="JSON", help="only print the tables of a recorded result")
    a = p.parse_args()
    if a.markdown:
        print(markdown(json.loads(Path(a.markdown).read_text())))
        return
    out = Path(a.out).resolve()
    runs: list[dict] = []
    for seed in (int(s) for s in a.seeds.split(",") if s.strip()):
        for precision in PRECISIONS:
            runs.append(run_one(precision, seed, out, a.steps, a.num_images))
            result = {
                "config": CONFIG,
                "steps": a.steps,
                "eval": "fashion-mnist:test",
                "features": "fmnist",
                "speed_note": CONTENTION,
                "runs": runs,
                "verdict": verdict(runs),
            }
            print(markdown(result), flush=True)
            if a.record:
                Path(a.result).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
