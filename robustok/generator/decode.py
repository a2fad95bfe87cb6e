"""Fast AR decoding: a static KV cache and input buffers kept between `sample` calls; on a GPU the decoding
steps are captured once as CUDA graphs and replayed, so a step costs a few graph launches, not hundreds of
kernel launches from Python.

Correct by construction: the captured code is `ARGenerator.decode_step`, the very step of the default path,
with the same shapes at every step (the cache is read up to the current position only, as there), no host
synchronisation, and the random numbers drawn beforehand exactly as the default path draws them
(`guidance.uniforms`). On the CPU the same steps run eagerly on the same buffers. A call with a smaller batch
than the decoder's runs padded (padding rows: the null class); a larger batch, other sampling settings, another
device/dtype or moved weights build a new decoder.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch

from robustok.errors import ConfigError
from robustok.generator.guidance import DrawRule, uniforms

STEPS_PER_GRAPH = 16  # decoding steps per CUDA graph (a 256-token grid: 16 graphs)
_DECODERS: "weakref.WeakKeyDictionary[torch.nn.Module, StaticDecoder]" = weakref.WeakKeyDictionary()


def _autocast_on(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()


def _weights_key(model: torch.nn.Module) -> tuple:
    """Device, dtype and storage of every parameter and buffer: a captured graph reads them by address."""
    return tuple((t.device, t.dtype, t.data_ptr()) for t in (*model.parameters(), *model.buffers()))


class StaticDecoder:
    """Buffers (and CUDA graphs) for decoding `capacity` images at a time with one `DrawRule`.

    Holds no reference to the model (it is kept in a weak dictionary keyed by the model).
    """

    def __init__(
        self,
        model,
        capacity: int,
        rule: DrawRule,
        teacher: bool,
        graphs: Optional[bool] = None,
        steps_per_graph: int = STEPS_PER_GRAPH,
    ):
        p = model.head.weight
        dev = p.device
        self.capacity, self.rule, self.teacher, self.length = capacity, rule, teacher, model.seq_len
        self.use_graphs = dev.type == "cuda" if graphs is None else graphs
        if self.use_graphs and dev.type != "cuda":
            raise ConfigError(f"CUDA graphs need a CUDA model, this one is on {dev}")
        self.steps_per_graph = max(1, int(steps_per_graph))
        self.key = (_weights_key(model), torch.is_inference_mode_enabled())  # inference tensors stay so
        rows = 2 * capacity if rule.guided else capacity
        L = self.length
        self.rows = torch.full((rows,), model.null_class, dtype=torch.long, device=dev)
        self.seq = torch.zeros(rows, L, dtype=torch.long, device=dev)
        self.u = torch.full((L, capacity, 1), 0.5, dtype=torch.float64, device=dev)
        self.keep = torch.zeros(capacity, L, dtype=torch.bool, device=dev) if teacher else None
        self.prefix = torch.zeros(capacity, L, dtype=torch.long, device=dev) if teacher else None
        self.cache = model.new_cache(rows, dev, p.dtype)
        self.mods: Optional[list[tuple]] = None
        self.graphs: list = []
        self.captures = 0

    def fits(self, model, batch: int, rule: DrawRule, teacher: bool) -> bool:
        """Whether this decoder can serve a call (same settings and weights, batch within its capacity)."""
        return (
            batch <= self.capacity
            and rule == self.rule
            and teacher == self.teacher
            and self.key == (_weights_key(model), torch.is_inference_mode_enabled())
        )

    def _run(self, model, lo: int, hi: int) -> None:
        """Decoding steps [lo, hi) on the static buffers (what a graph captures)."""
        if lo == 0:
            self.cache.length = 0
            self.mods = model.modulations(self.rows)  # kept referenced: later graphs read it
        for s in range(lo, hi):
            model.decode_step(
                self.seq,
                self.rows,
                s,
                self.capacity,
                self.rule,
                self.cache,
                self.mods,
                u=self.u[s],
                keep=self.keep,
                prefix=self.prefix,
            )

    def _capture(self, model) -> None:
        """One eager warm-up pass on a side stream, then one graph per `steps_per_graph` steps (shared pool)."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._run(model, 0, self.length)
        torch.cuda.current_stream().wait_stream(side)
        self.mods = None  # re-made inside the first graph's pool
        pool = torch.cuda.graph_pool_handle()
        graphs = []
        for lo in range(0, self.length, self.steps_per_graph):
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                self._run(model, lo, min(self.length, lo + self.steps_per_graph))
            graphs.append(g)
        self.graphs = graphs
        self.captures += 1

    def __call__(
        self,
        model,
        labels: torch.Tensor,
        generator: Optional[torch.Generator],
        keep_mask: Optional[torch.Tensor],
        prefix_tokens: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Token grids (B, h, w) for class ids `labels` (B <= capacity), the same as `model.sample` draws."""
        B, cap, L = labels.shape[0], self.capacity, self.length
        self.u[:, :B] = uniforms(generator, L, B, self.u.device)
        self.u[:, B:] = 0.5
        self.rows[:cap] = model.null_class
        self.rows[:B] = labels
        if self.keep is not None and self.prefix is not None:  # built for teacher forcing
            if keep_mask is None or prefix_tokens is None:
                raise ConfigError("this static decoder teacher-forces: it needs keep_mask and prefix_tokens")
            self.keep.zero_()
            self.keep[:B] = keep_mask
            self.prefix[:B] = prefix_tokens
        if not self.use_graphs:
            self._run(model, 0, L)
        else:
            if _autocast_on(self.seq.device):
                raise ConfigError(
                    "static-cache decoding with CUDA graphs does not run under autocast; "
                    "cast the generator instead (e.g. model.to(torch.bfloat16))"
                )
            if not self.graphs:
                self._capture(model)
            for g in self.graphs:
                g.replay()
        return self.seq[:B].clone().view(B, *model.config.grid)


def static_decoder(
    model, batch: int, rule: DrawRule, teacher: bool = False, graphs: Optional[bool] = None
) -> StaticDecoder:
    """The model's decoder for these settings, built (and its old one released) when none fits."""
    old = _DECODERS.get(model)
    if old is not None and old.fits(model, batch, rule, teacher) and (graphs is None or graphs == old.use_graphs):
        return old
    _DECODERS.pop(model, None)
    del old  # free its cache before allocating the new one
    dec = StaticDecoder(model, batch, rule, teacher, graphs)
    _DECODERS[model] = dec
    return dec


def release_static_decoder(model) -> None:
    """Free the model's static decoder (its cache and graphs), e.g. before training resumes on the GPU."""
    _DECODERS.pop(model, None)


@torch.no_grad()
def static_sample(
    model,
    labels: torch.Tensor,
    rule: DrawRule,
    generator: Optional[torch.Generator] = None,
    keep_mask: Optional[torch.Tensor] = None,
    prefix_tokens: Optional[torch.Tensor] = None,
    graphs: Optional[bool] = None,
) -> torch.Tensor:
    """`model.sample(..., static_cache=True)` on checked inputs (labels on the model's device)."""
    if model.training and model.config.dropout > 0:
        raise ConfigError("static-cache decoding needs the generator in eval mode (its dropout is on)")
    dec = static_decoder(model, labels.shape[0], rule, keep_mask is not None, graphs)
    return dec(model, labels, generator, keep_mask, prefix_tokens)
