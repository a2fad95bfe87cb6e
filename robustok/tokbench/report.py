"""The benchmark's table (text) and scatter plot (PNG)."""

from __future__ import annotations

import math
from pathlib import Path


def _f(v, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(result: dict) -> str:
    """One row per tokenizer, then per K and endpoint the correlations and their difference."""
    cfg = result["spec"]["cfg"]
    lines = [
        f"{'tokenizer':<24} {'K':>5} {'PSNR':>6} {'rFID':>7} {'pFID':>7} {'usage':>6} "
        f"{'gFID':>7} {'(floor)':>7} {f'gFID cfg{cfg:g}':>11} {'(floor)':>7}"
    ]
    for r in result["tokenizers"]:
        lines.append(
            f"{r['name']:<24} {r['codebook_size']:>5} {_f(r['psnr']):>6} {_f(r['rfid']):>7} "
            f"{_f(r['pfid']):>7} {r['codebook_usage']:>6.0%} {_f(r['gfid_nocfg']):>7} "
            f"{_f(r['gfid_nocfg_noise']):>7} {_f(r['gfid_cfg']):>11} {_f(r['gfid_cfg_noise']):>7}"
        )
    for k, group in result["by_codebook_size"].items():
        lines.append(f"\nK = {k} ({len(group['tokenizers'])} tokenizers)")
        for key in ("gfid_nocfg", "gfid_cfg"):
            c = group[key]
            parts = []
            for kind in ("spearman", "pearson"):
                d = c[kind]
                parts.append(
                    f"{kind} pFID {_f(d['a'])} rFID {_f(d['b'])} difference {_f(d['difference'])} "
                    f"[{_f(d['ci95'][0])}, {_f(d['ci95'][1])}]"
                )
            o = c["ordering"]
            parts.append(
                f"pairs ordered as gFID: pFID {_f(o['a_accuracy'])} rFID {_f(o['b_accuracy'])}; on the "
                f"{o['disagreeing_pairs']} pairs where they disagree: pFID {_f(o['a_accuracy_on_disagreeing'])}"
                f" rFID {_f(o['b_accuracy_on_disagreeing'])}"
            )
            lines.append(f"  {key}: " + "\n    ".join(parts))
    return "\n".join(lines)


def scatter_plot(result: dict, path: Path) -> None:
    """rFID and pFID against gFID (with CFG), one colour per K; Spearman in each panel's title."""
    from robustok.extras import require

    matplotlib = require("matplotlib", "benchmark-tokenizers' scatter.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustok.hub import atomic_write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for k, group in result["by_codebook_size"].items():
        rows = [r for r in result["tokenizers"] if str(r["codebook_size"]) == k]
        corr = group["gfid_cfg"]["spearman"]
        for ax, metric, rho in ((axes[0], "rfid", corr["b"]), (axes[1], "pfid", corr["a"])):
            ax.scatter([r[metric] for r in rows], [r["gfid_cfg"] for r in rows], label=f"K={k} (ρ={_f(rho)})")
            for r in rows:
                ax.annotate(r["name"], (r[metric], r["gfid_cfg"]), fontsize=6)
    for ax, name in zip(axes, ("rFID", "pFID")):
        ax.set_xlabel(f"{name} ({result['features']})")
        ax.set_ylabel(f"gFID, CFG {result['spec']['cfg']:g}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
