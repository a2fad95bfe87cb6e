"""`report.html`: one self-contained page (inline PNG figures) built from what a demo run left on disk."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from robustok.extras import require


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img_file(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def figures(res: dict, out: Path) -> list[tuple[str, str]]:
    matplotlib = require("matplotlib", "report.html's figures")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = res["features"]
    figs: list[tuple[str, str]] = []
    # pFID grid heat maps
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, name in zip(axes, ("baseline", "robust")):
        grid = res[name]["pfid_grid"]
        alphas = sorted({g["alpha"] for g in grid}, reverse=True)
        deltas = sorted({g["delta"] for g in grid})
        m = np.array(
            [[next(g["fid"] for g in grid if g["alpha"] == a and g["delta"] == d) for d in deltas] for a in alphas]
        )
        im = ax.imshow(m, cmap="viridis")
        ax.set_xticks(range(len(deltas)), [str(d) for d in deltas])
        ax.set_yticks(range(len(alphas)), [str(a) for a in alphas])
        ax.set_xlabel("δ")
        ax.set_ylabel("α")
        ax.set_title(f"{name}: pFID-{feats} {res[name]['pfid']:.1f}")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.8)
    figs.append((f"pFID grid (FID-{feats} of decoded perturbed tokens vs inputs, per cell)", _png(fig)))
    # gFID before / after / control
    fig, ax = plt.subplots(figsize=(5, 3))
    labels = ["untouched", "post-trained", "control σ=1"]
    for k, name in enumerate(("baseline", "robust")):
        p = res[name]
        vals = [p["gfid_before_paired"], p["gfid_post"], p["gfid_control"]]
        ax.bar(np.arange(3) + 0.38 * k, vals, 0.38, label=name)
    ax.set_xticks(np.arange(3) + 0.19, labels)
    ax.set_ylabel(f"gFID-{feats} (same tokens)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)  # below: never on a bar
    figs.append(
        ("gFID of the same generated tokens decoded by each decoder (mean over post-training seeds)", _png(fig))
    )
    # where this run lies among the measured post-training conditions
    from robustok.posttrain.evidence import plot_evidence

    fig, ax = plt.subplots(figsize=(5, 3))
    plot_evidence(
        ax,
        [
            (res[n]["gfid"] / max(res[n]["rfid"], 1e-6), res[n]["delta_vs_control"], f"this run: {n}")
            for n in ("baseline", "robust")
        ],
    )
    figs.append(
        (
            "Post-trained − control per seed against the generator's gFID over the tokenizer's rFID: this run "
            "(colours) among the conditions measured so far (grey, size ~ runs; docs/studies.md, "
            f"FID-fmnist; this run: FID-{feats})",
            _png(fig),
        )
    )
    # correlations
    pts = res["points"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, metric, rho in ((axes[0], "pfid", res["spearman_pfid_gfid"]), (axes[1], "rfid", res["spearman_rfid_gfid"])):
        for name, p in pts.items():
            ax.scatter(p[metric], p["gfid"], c="C1" if name.startswith("robust") else "C0")
            ax.annotate(name.split("-")[0][0] + name.split("-")[1].lstrip("0"), (p[metric], p["gfid"]), fontsize=7)
        ax.set_xlabel(f"{metric[0]}FID-{feats}")
        ax.set_ylabel(f"gFID-{feats}")
        ax.set_title(f"Spearman ρ = {rho:.2f}" if rho is not None else "Spearman ρ: n/a")
    figs.append(
        (
            "pFID and rFID against gFID over all tokenizer checkpoints (b = baseline, r = robust; number = "
            "training step)",
            _png(fig),
        )
    )
    # training curves
    fig, ax = plt.subplots(figsize=(5, 3))
    for name in ("baseline", "robust"):
        f = out / "runs" / f"tok-{name}" / "metrics.jsonl"
        if f.is_file():
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            ax.plot([r["step"] for r in rows], [r["rec"] for r in rows], label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("reconstruction loss (L1+L2)")
    ax.legend()
    figs.append(("Main-training curves", _png(fig)))
    return figs


def write_report(out: str | Path) -> Path:
    """Rebuild `<out>/report.html` from `<out>/results.json` and the image grids on disk."""
    out = Path(out)
    res = json.loads((out / "results.json").read_text())
    feats = res["features"]
    rows = []
    for name in ("baseline", "robust"):
        r = res[name]
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_fmt(v)}</td>"
                for v in (
                    name,
                    r["psnr"],
                    r["ssim"],
                    r["rfid"],
                    r["pfid"],
                    r["codebook_usage"],
                    r["gfid"],
                    r["gfid_noise"],
                    r["gfid_before_paired"],
                    r["gfid_post"],
                    r["gfid_control"],
                    r["delta_vs_control_mean"],
                    r["delta_vs_control_sd"],
                    r.get("rfid_post"),
                    r.get("rfid_control"),
                )
            )
            + "</tr>"
        )
    head = (
        "tokenizer",
        "PSNR dB",
        "SSIM",
        f"rFID-{feats}",
        f"pFID-{feats}",
        "codebook usage",
        f"gFID-{feats}",
        "|Δ| two sample sets",
        "gFID paired: untouched",
        "post-trained",
        "control σ=1",
        "post − control (mean)",
        "sd over seeds",
        "rFID after post-training",
        "rFID after control",
    )
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    figs = "".join(
        f"<figure><img src='{src}'><figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, src in figures(res, out)
    )
    grids = "".join(
        f"<figure><img class='grid' src='{_img_file(p)}'><figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in sorted((out / "grids").glob("*.png"))
    )
    verdict = html.escape(res.get("verdict", ""))
    stage_times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in res.get("stage_time_s", {}).items()) or "per stage: n/a"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>robustok demo ({res["profile"]})</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #bbb;padding:4px 6px;text-align:right}}th{{background:#eee}}
figure{{display:inline-block;margin:8px}}
img.grid{{image-rendering:pixelated;width:420px}}figcaption{{font-size:12px;max-width:520px}}</style></head><body>
<h1>robustok demo: RobusTok's effects on Fashion-MNIST</h1>
<p>Profile <b>{html.escape(res["profile"])}</b>; features of every FID: <b>{html.escape(feats)}</b>
(FID-{html.escape(feats)}, not comparable with Inception FIDs); wall time {res.get("wall_time_s", 0) / 60:.1f} min
({html.escape(stage_times)}).
Spearman ρ(pFID, gFID) = {_fmt(res["spearman_pfid_gfid"])}, ρ(rFID, gFID) = {_fmt(res["spearman_rfid_gfid"])}
over {len(res["points"])} tokenizer checkpoints.</p>
<p><b>Verdict:</b> {verdict}</p>
{table}
<h2>Figures</h2>{figs}
<h2>Images</h2>{grids}
<h2>Configuration</h2><pre>{html.escape(json.dumps(res["profile_config"], indent=1))}</pre>
</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
