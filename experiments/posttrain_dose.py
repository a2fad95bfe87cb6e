"""Issue 10 E3 (+ E1): does post-training's gain over its sigma = 1 control depend on how good the generator is?

    python experiments/posttrain_dose.py --tokenizer TOK --tokens STORE --out runs/dose [--record]

One tokenizer, one token store; AR generators of increasing quality (the same config trained for more steps);
for each arm: the generator's gFID and the `robustok diagnose` statistics, post-training pairs (sigma = 0.9) and
held-out generated tokens, then post-training and its equal-compute sigma = 1 control over three seeds. The last
arm repeats the best generator with pairs and held-out tokens sampled at high guidance (CFG 5, power schedule
1.15, the authors' sampler regime: E1). Everything goes through the CLI, so the study measures the shipped
commands; every step is skipped when its output exists, so an interrupted study continues.

Endpoints, fixed before the run (docs/studies.md):
- per arm and seed: Delta = gFID-proxy(post-trained) - gFID-proxy(control) on the arm's held-out generated tokens
  (FID-fmnist, 1000 images, the final step); the paper's comparison, post-trained - untouched, beside it;
- the effect counts for an arm when Delta <= -0.5 on every seed; the dose-response is the Spearman correlation of
  the mean Delta with the generator's gFID (and with the diagnostics: unseen-bigram share, round-trip change).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# name, generator steps, CFG scale, CFG schedule, CFG power (of the pairs and the held-out tokens)
ARMS = [
    ("gen100", 100, 1.5, "constant", 1.0),
    ("gen300", 300, 1.5, "constant", 1.0),
    ("gen800", 800, 1.5, "constant", 1.0),
    ("gen2000", 2000, 1.5, "constant", 1.0),
    ("gen2000-cfg5", 2000, 5.0, "power", 1.15),
]
SEEDS = (0, 1, 2)
SIGMA = 0.9
BUDGETS = {
    "full": {"steps": {}, "num_pairs": 4000, "num_eval": 1000, "post_steps": 300},
    "quick": {"steps": {100: 4, 300: 8, 800: 12, 2000: 16}, "num_pairs": 64, "num_eval": 32, "post_steps": 6},
}  # quick: a smoke run of the wiring, its numbers mean nothing


def robustok(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "robustok.cli", *map(str, args)], check=True, cwd=ROOT)


def pairs_once(out: Path, gen: str, tok: str, *, sigma: float, num_pairs: int, num_eval: int, seed: int,
               sampling: list[str], pair_input: str = "ids") -> Path:  # fmt: skip
    """`robustok post-train-data` into `out` unless a finished store is there; returns `out`."""
    if not (out / "manifest.json").is_file():
        robustok("post-train-data", gen, "--tokenizer", tok, "--sigma", sigma, "--num-pairs", num_pairs,
                 "--num-eval", num_eval, *sampling, "--pair-input", pair_input, "--seed", seed, "--out", out,
                 "--overwrite", "--no-progress")  # fmt: skip
    return out


def aux_network(out: Path) -> Path:
    """The offline perceptual network of the authors' recipe, trained once into `out` (deterministic)."""
    aux = out / "aux-perceptual.safetensors"
    if not aux.is_file():
        from robustok.losses.aux_perceptual import train_aux_perceptual

        train_aux_perceptual(aux)
    return aux


def train_generator(tokens: str, tok: str, steps: int, out: Path) -> Path:
    run = out / "generators" / f"steps{steps}"
    if not (run / "generator" / "model.safetensors").is_file():
        robustok(
            "train-generator",
            "configs/generator/fmnist-ar.yaml",
            f"data.tokens={tokens}",
            f"data.tokenizer={tok}",
            f"run.dir={run}",
            "run.seed=0",
            f"train.steps={steps}",
            "run.sample_every=0",
            f"run.ckpt_every={max(steps // 4, 1)}",
            "run.deterministic=true",
            *(["--resume"] if (run / "checkpoints").is_dir() else []),
        )
    return run / "generator"


def run_arm(arm: tuple, tok: str, tokens: str, out: Path, budget: dict) -> dict:
    name, steps, cfg, schedule, power = arm
    steps = budget["steps"].get(steps, steps)
    num_eval, post_steps = budget["num_eval"], budget["post_steps"]
    gen = train_generator(tokens, tok, steps, out)
    guidance = ["--cfg", str(cfg), "--cfg-schedule", schedule, "--cfg-power", str(power)]
    diag = out / name / "diagnose.json"
    if not diag.is_file():
        robustok(
            "diagnose",
            gen,
            "--tokenizer",
            tok,
            "--num-samples",
            num_eval,
            "--features",
            "fmnist",
            "--cfg",
            cfg,
            "--cfg-schedule",
            schedule,
            "--cfg-power",
            power,
            "--json",
            diag,
        )
    pairs = pairs_once(out / name / "pairs", gen, tok, sigma=SIGMA, num_pairs=budget["num_pairs"],
                       num_eval=num_eval, seed=0, sampling=guidance, pair_input="ids")  # fmt: skip
    runs = []
    for seed in SEEDS:
        run = out / name / f"post-seed{seed}"
        if not (run / "posttrain.json").is_file():
            robustok(
                "post-train",
                "configs/posttrain/fmnist.yaml",
                f"tokenizer={tok}",
                f"pairs={pairs}",
                f"run.dir={run}",
                f"run.seed={seed}",
                f"train.steps={post_steps}",
                f"eval_every={post_steps // 3}",
                "eval_features=fmnist",
                "eval_reference=fashion-mnist:test",
                f"eval_num_reference={num_eval}",
                "--control",
            )
        runs.append(json.loads((run / "posttrain.json").read_text()))
    return summarize((name, steps, cfg, schedule, power), json.loads(diag.read_text()), runs)


def summarize(arm: tuple, diag: dict, runs: list[dict]) -> dict:
    name, steps, cfg, schedule, power = arm
    row = diag["generated"][0]
    before = runs[0]["gfid_proxy_before"]
    post = [r["gfid_proxy_after"] for r in runs]
    control = [r["gfid_proxy_control"] for r in runs]
    delta = [p - c for p, c in zip(post, control)]
    return {
        "arm": name,
        "generator_steps": steps,
        "cfg": cfg,
        "cfg_schedule": schedule,
        "cfg_power": power,
        "gfid": row.get("gfid"),
        "rfid": diag["real"].get("rfid"),
        "diagnostics": row,
        "real": diag["real"],
        "untouched": before,
        "post": post,
        "control": control,
        "delta_vs_control": delta,
        "delta_vs_untouched": [p - before for p in post],
        "delta_mean": float(np.mean(delta)),
        "delta_sd": float(np.std(delta, ddof=1)),
        "beats_control_every_seed": bool(all(d <= -0.5 for d in delta)),
    }


def dose_response(rows: list[dict]) -> dict:
    """Spearman correlation of the mean Delta with generator gFID and the diagnostics (arms at one guidance)."""
    from scipy.stats import spearmanr

    same = [r for r in rows if r["cfg_schedule"] == "constant" and r.get("gfid") is not None]
    if len(same) < 3:
        return {}
    out = {"arms": [r["arm"] for r in same]}
    delta = [r["delta_mean"] for r in same]
    for key in ("gfid", "unseen_horizontal_bigrams", "roundtrip_change", "position_js_bits"):
        xs = [r["gfid"] if key == "gfid" else r["diagnostics"].get(key) for r in same]
        if all(x is not None for x in xs):
            out[f"spearman_delta_{key}"] = float(spearmanr(xs, delta).statistic)
    return out


def markdown(result: dict) -> str:
    """The docs/studies.md table from a recorded result."""
    f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "| arm | generator steps | pairs / held-out CFG | gFID | gFID/rFID | unseen h-bigrams | round-trip change "
        "| untouched | post-trained | control σ = 1 | post − control per seed | mean ± sd | post − untouched |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in result["arms"]:
        d, cfg = (
            r["diagnostics"],
            f"{r['cfg']:g}" + (f" ({r['cfg_schedule']} {r['cfg_power']:g})" if r["cfg_schedule"] != "constant" else ""),
        )
        lines.append(
            f"| {r['arm']} | {r['generator_steps']} | {cfg} | {f(r['gfid'], 1)} | "
            f"{f(r['gfid'] / r['rfid'], 1)} | {f(d.get('unseen_horizontal_bigrams'))} | "
            f"{f(d.get('roundtrip_change'))} | {f(r['untouched'])} | {f(np.mean(r['post']))} | "
            f"{f(np.mean(r['control']))} | {', '.join(f'{x:+.2f}' for x in r['delta_vs_control'])} | "
            f"{r['delta_mean']:+.2f} ± {r['delta_sd']:.2f} | {np.mean(r['delta_vs_untouched']):+.2f} |"
        )
    dr = result.get("dose_response") or {}
    if dr:
        lines.append("")
        lines.append(
            "Spearman ρ of the mean post − control with: "
            + ", ".join(
                f"{k.removeprefix('spearman_delta_')} {v:+.2f}" for k, v in dr.items() if k.startswith("spearman")
            )
        )
    return "\n".join(lines)


def plot(result: dict, png: Path) -> None:
    """The dose-response figure: this study's arms among the other measured conditions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustok.posttrain.evidence import EVIDENCE, plot_evidence

    fig, ax = plt.subplots(figsize=(6, 3.4))
    own = [(r["gfid"] / r["rfid"], r["delta_vs_control"], r["arm"]) for r in result["arms"]]
    plot_evidence(ax, own, evidence=[c for c in EVIDENCE if "posttrain-dose" not in c.where])  # the others
    fig.savefig(png, dpi=110, bbox_inches="tight")


def inception_check(out: Path, arms: list[str], seeds=SEEDS, num: int = 1000) -> dict:
    """The sign check of the endpoint with FID-inception: the arm's held-out generated tokens decoded by the
    untouched, post-trained and control decoders, against `num` fashion-mnist:test images."""
    import torch

    from robustok.demo.stages import decoded_fid
    from robustok.evaluation import feature_net
    from robustok.metrics.fid import source_stats
    from robustok.tokenizer.loading import load_tokenizer
    from robustok.tokens.pairs import PairStore

    net = feature_net("inception", "cpu")
    reference = source_stats("fashion-mnist:test", net, num_images=num, batch_size=100, resolution=32)

    def fid(tok_dir: Path, ids: torch.Tensor) -> float:
        with torch.no_grad():
            return float(decoded_fid(load_tokenizer(tok_dir), ids, net, reference))

    result = {}
    for arm in arms:
        pairs = out / arm / "pairs"
        ids = torch.from_numpy(np.array(PairStore(pairs).eval_generated[:num], dtype=np.int64))  # a writable copy
        untouched = json.loads((out / arm / "post-seed0" / "posttrain.json").read_text())["config"]["tokenizer"]
        row = {"untouched": fid(Path(untouched), ids), "post": [], "control": []}
        for seed in seeds:
            run = out / arm / f"post-seed{seed}"
            row["post"].append(fid(run / "tokenizer", ids))
            row["control"].append(fid(run / "control" / "tokenizer", ids))
        row["delta_vs_control"] = [p - c for p, c in zip(row["post"], row["control"])]
        print(
            f"{arm}: FID-inception untouched {row['untouched']:.2f}, post - control "
            f"{', '.join(f'{d:+.2f}' for d in row['delta_vs_control'])}",
            flush=True,
        )
        result[arm] = row
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", help="a trained tokenizer directory")
    p.add_argument("--tokens", help="its token store (robustok pretokenize)")
    p.add_argument("--out")
    p.add_argument("--markdown", metavar="JSON", help="print the docs table of a recorded result and stop")
    p.add_argument("--plot", nargs=2, metavar=("JSON", "PNG"), help="draw the dose-response figure and stop")
    p.add_argument("--arms", default=",".join(a[0] for a in ARMS))
    p.add_argument("--record", action="store_true", help="write experiments/results/posttrain-dose.json")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    p.add_argument(
        "--inception-check",
        metavar="ARMS",
        help="comma list of finished arms: FID-inception of their "
        "endpoint (with --out; adds 'inception' to the recorded result with --record)",
    )
    args = p.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    if args.plot:
        plot(json.loads(Path(args.plot[0]).read_text()), Path(args.plot[1]))
        return
    if args.inception_check:
        check = inception_check(Path(args.out), args.inception_check.split(","))
        if args.record:
            path = ROOT / "experiments" / "results" / "posttrain-dose.json"
            result = json.loads(path.read_text())
            result["inception"] = {**result.get("inception", {}), **check}
            path.write_text(json.dumps(result, indent=1))
        return
    if not (args.tokenizer and args.tokens and args.out):
        p.error("--tokenizer, --tokens and --out are required to run the study")
    budget = BUDGETS[args.budget]
    out = Path(args.out).resolve()
    rows = []
    for arm in ARMS:
        if arm[0] in args.arms.split(","):
            rows.append(
                run_arm(arm, str(Path(args.tokenizer).resolve()), str(Path(args.tokens).resolve()), out, budget)
            )
            r = rows[-1]
            print(
                f"{r['arm']}: gFID {r['gfid']}, untouched {r['untouched']:.2f}, post - control "
                f"{', '.join(f'{d:+.2f}' for d in r['delta_vs_control'])}",
                flush=True,
            )
            result = {
                "sigma": SIGMA,
                **{k: v for k, v in budget.items() if k != "steps"},
                "budget": args.budget,
                "seeds": list(SEEDS),
                "tokenizer": args.tokenizer,
                "arms": rows,
                "dose_response": dose_response(rows),
            }
            (out / "results.json").write_text(json.dumps(result, indent=1))
            if args.record and args.budget == "full":
                (ROOT / "experiments" / "results" / "posttrain-dose.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
