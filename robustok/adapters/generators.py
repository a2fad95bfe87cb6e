"""Released generator weight files -> robustok generators, paired with their converted tokenizer.

- `llamagen-gpt`: LlamaGen GPT c2i (`c2i_B_256.pt` ... `c2i_3B_384.pt`: a `model` / `ema` / `module` /
  `state_dict` entry, or a bare FSDP-saved state dict), with the `llamagen-vq16` tokenizer.
- `rar`: RAR-B/L/XL/XXL (`rar_b.bin` ...: bare state dicts) with the `maskgit-vqgan` tokenizer (K = 1024).
- `robustok-rar`: the RobusTok release's RAR-B/L (`rar_b.bin`, `rar_l.bin` of qiuk6/RobusTok) with the
  `robustok-release` tokenizer (K = 4096).

`load_external_generator(kind, path, tokenizer)` reads the file safely (`robustok.weight_files.read_checkpoint`),
checks it is of the family, reads the sizes off the tensor shapes (the grid off the tokenizer), maps every upstream
key strictly (unknown keys and missing or misshaped ones are errors naming the file and the first keys) and
records the tokenizer's fingerprint in the generator's config, so commands refuse any other tokenizer.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

from torch import Tensor

from robustok.adapters.base import check_kind, level_indices, read_checkpoint
from robustok.errors import CheckpointError, ConfigError
from robustok.generator.llamagen_gpt import LlamaGenGPT
from robustok.generator.rar import RARGenerator
from robustok.generator.released import ReleasedAR
from robustok.hub import load_state_checked

# LlamaGen GPT sizes (gpt.py GPT_models): width -> heads. Head counts are not in the weights.
LLAMAGEN_HEADS = {768: 12, 1024: 16, 1280: 20, 1536: 24, 2048: 32, 2560: 40, 3200: 32, 4096: 32}


def _llamagen_key(k: str) -> Optional[str]:
    fixed = {
        "tok_embeddings.weight": "tok_emb.weight",
        "cls_embedding.embedding_table.weight": "cls_emb.weight",
        "norm.weight": "norm.weight",
        "output.weight": "head.weight",
    }
    if k in fixed:
        return fixed[k]
    m = re.fullmatch(
        r"layers\.(\d+)\.(attention\.wqkv|attention\.wo|feed_forward\.w[123]|attention_norm|ffn_norm)"
        r"\.weight",
        k,
    )
    if not m:
        return None
    part = {
        "attention.wqkv": "attn.qkv",
        "attention.wo": "attn.proj",
        "attention_norm": "norm1",
        "ffn_norm": "norm2",
    }.get(m.group(2), m.group(2).replace("feed_forward", "mlp"))
    return f"blocks.{m.group(1)}.{part}.weight"


def _rar_key(k: str) -> Optional[str]:
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", k)
    if m:
        inner = m.group(2)
        if inner == "adaLN_modulation.1":
            return f"blocks.{m.group(1)}.ada.1.{m.group(3)}"
        if inner in ("norm1", "norm2", "attn.qkv", "attn.proj", "attn.q_norm", "attn.k_norm", "mlp.fc1", "mlp.fc2"):
            return k
        return None
    return {
        "adaln_before_head.adaLN_modulation.1.weight": "final_ada.1.weight",
        "adaln_before_head.adaLN_modulation.1.bias": "final_ada.1.bias",
        "lm_head.weight": "head.weight",
        "lm_head.bias": "head.bias",
        "cls_token": "cls_token",
    }.get(k)


def _llamagen_config(state: dict[str, Tensor], source: str) -> dict[str, Any]:
    K, D = map(int, state["tok_embeddings.weight"].shape)
    out: dict[str, Any] = {
        "vocab_size": K,
        "dim": D,
        "num_classes": int(state["cls_embedding.embedding_table.weight"].shape[0]) - 1,
        "depth": len(level_indices(state, "layers.")),
    }
    if "layers.0.feed_forward.w1.weight" in state:
        out["ffn_dim"] = int(state["layers.0.feed_forward.w1.weight"].shape[0])
    if D in LLAMAGEN_HEADS:
        out["heads"] = LLAMAGEN_HEADS[D]
    return out


def _rar_config(state: dict[str, Tensor], source: str) -> dict[str, Any]:
    K, D = map(int, state["lm_head.weight"].shape)
    rows = int(state["embeddings.weight"].shape[0])
    if rows < K + 3:
        raise CheckpointError(
            f"{source}: 'embeddings.weight' has {rows} rows, fewer than the {K} token rows + mask "
            "+ a class + null that RAR's table holds"
        )
    out: dict[str, Any] = {
        "vocab_size": K,
        "dim": D,
        "num_classes": rows - K - 2,
        "depth": len(level_indices(state, "blocks.")),
    }
    if "blocks.0.mlp.fc1.weight" in state:
        out["mlp_dim"] = int(state["blocks.0.mlp.fc1.weight"].shape[0])
    if "blocks.0.attn.q_norm.weight" in state:
        out["heads"] = D // int(state["blocks.0.attn.q_norm.weight"].shape[0])
    return out


def _rar_tables(state: dict[str, Tensor], config: Any, source: str) -> dict[str, Tensor]:
    """The used rows of RAR's tables, under this module's names (see `robustok.generator.rar`)."""
    K, L = config.vocab_size, config.grid[0] * config.grid[1]
    need = {"pos_embed": L + 1, "target_aware_pos_embed": L + 2, "timesteps_embeddings": L + 1}
    for key, rows in need.items():
        t = state[key]
        if t.ndim != 3 or t.shape[0] != 1 or t.shape[1] < rows or t.shape[2] != config.dim:
            raise CheckpointError(
                f"{source}: {key!r} {tuple(t.shape)} does not cover a {config.grid[0]}x"
                f"{config.grid[1]} grid (need (1, >= {rows}, {config.dim})): is the tokenizer's "
                "image size right?"
            )
    emb = state["embeddings.weight"]
    return {
        "tok_emb.weight": emb[:K],
        "cls_emb.weight": emb[K + 1 :],
        "pos_emb": state["pos_embed"][0, : L + 1],
        "target_emb": state["target_aware_pos_embed"][0, 2 : L + 2],
        "step_emb": state["timesteps_embeddings"][0, : L + 1],
    }


@dataclasses.dataclass(frozen=True)
class GeneratorAdapter:
    """How one released generator family is read: its class, the tokenizer kind it pairs with, the entries of a
    training checkpoint to look in, the keys every file has, the key mapping and the sizes read off shapes."""

    cls: type[ReleasedAR]
    tokenizer_kind: str
    entries: tuple[str, ...]
    signature: tuple[str, ...]
    rename: Callable[[str], Optional[str]]
    infer_config: Callable[[dict[str, Tensor], str], dict[str, Any]]
    tables: Optional[Callable[[dict[str, Tensor], Any, str], dict[str, Tensor]]] = None
    table_keys: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.cls.family


def _rar(tokenizer_kind: str) -> GeneratorAdapter:
    return GeneratorAdapter(
        RARGenerator,
        tokenizer_kind,
        ("model", "ema", "state_dict"),
        (
            "embeddings.weight",
            "lm_head.weight",
            "cls_token",
            "pos_embed",
            "target_aware_pos_embed",
            "timesteps_embeddings",
        ),
        _rar_key,
        _rar_config,
        _rar_tables,
        ("embeddings.weight", "pos_embed", "target_aware_pos_embed", "timesteps_embeddings"),
    )


GENERATOR_ADAPTERS: dict[str, GeneratorAdapter] = {
    "llamagen-gpt": GeneratorAdapter(
        LlamaGenGPT,
        "llamagen-vq16",
        ("model", "ema", "module", "state_dict"),
        ("tok_embeddings.weight", "cls_embedding.embedding_table.weight", "output.weight"),
        _llamagen_key,
        _llamagen_config,
        ignore=("freqs_cis",),
    ),
    "rar": _rar("maskgit-vqgan"),
    "robustok-rar": _rar("robustok-release"),
}


def map_state(adapter: GeneratorAdapter, state: dict[str, Tensor], config: Any, source: str) -> dict[str, Tensor]:
    """The upstream state dict under robustok's names; unknown keys are an error naming the first three."""
    out: dict[str, Tensor] = {}
    unknown = []
    for k, v in state.items():
        if k in adapter.ignore or k in adapter.table_keys:
            continue
        new = adapter.rename(k)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise CheckpointError(
            f"{source}: keys a {adapter.family} checkpoint does not have: {sorted(unknown)[:3]}"
            f"{'...' if len(unknown) > 3 else ''} (another model, or a modified one?)"
        )
    if adapter.tables is not None:
        out.update(adapter.tables(state, config, source))
    return out


def tokenizer_kind(tokenizer: Any) -> str:
    """The converter kind (`robustok.adapters.ADAPTERS` key) of a loaded tokenizer, "" for robustok's own."""
    from robustok.adapters import ADAPTERS

    return next((k for k, cls in ADAPTERS.items() if type(tokenizer) is cls), "")


def load_external_generator(
    kind: str, path: str, tokenizer: Any, weights: Optional[str] = None, **config_overrides: Any
) -> ReleasedAR:
    """Load a released generator file of family `kind` (a key of `GENERATOR_ADAPTERS`) for `tokenizer` (a loaded,
    converted tokenizer of the family's tokenizer kind), in eval mode, with the tokenizer's fingerprint.

    `weights` picks a training checkpoint's entry ("model" | "ema"); `config_overrides` set config fields (e.g.
    `heads`) over the ones read off the shapes. Errors name the file.
    """
    if kind not in GENERATOR_ADAPTERS:
        raise ConfigError(f"unknown generator kind {kind!r}; choose one of {sorted(GENERATOR_ADAPTERS)}")
    a = GENERATOR_ADAPTERS[kind]
    have = tokenizer_kind(tokenizer)
    if have != a.tokenizer_kind:
        raise ConfigError(
            f"{kind}: --tokenizer is {'a ' + have if have else 'not a converted'} tokenizer; "
            f"{a.family} weights of this kind pair with a converted {a.tokenizer_kind} tokenizer "
            f"(robustok convert {a.tokenizer_kind} ...)"
        )
    state, source = read_checkpoint(path, weights, a.entries)
    check_kind(state, source, a.family, a.signature)
    cfg = {**a.infer_config(state, source), **config_overrides}
    if "heads" not in cfg:
        raise ConfigError(
            f"{source}: cannot tell the head count of a {cfg.get('dim')}-wide {a.family} from its "
            "weights; give it with --set heads=N"
        )
    if cfg["vocab_size"] != int(tokenizer.codebook_size):
        raise CheckpointError(
            f"{source}: a {a.family} generator over {cfg['vocab_size']} token ids; the tokenizer "
            f"has {tokenizer.codebook_size} codes (is it the tokenizer these weights were "
            "trained with?)"
        )
    g = int(tokenizer.grid_size)
    cfg.update(grid=[g, g], tokenizer_fingerprint=tokenizer.fingerprint())
    fields = {f.name for f in dataclasses.fields(a.cls.config_class)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise ConfigError(f"{kind}: unknown config field(s) {unknown}; fields are {sorted(fields)}")
    try:
        config = a.cls.config_class(**cfg)
        model = a.cls(config)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{kind}: invalid config {cfg}: {err}") from None
    load_state_checked(model, map_state(a, state, config, source), source)
    return model.eval()
