"""Image tokenizers: model, quantizer, latent perturbation, backbones."""

from robustok.tokenizer.base import TokenizerOutput
from robustok.tokenizer.model import Tokenizer, TokenizerConfig
from robustok.tokenizer.perturbation import PerturbationConfig, perturb_ids

__all__ = ["Tokenizer", "TokenizerConfig", "TokenizerOutput", "PerturbationConfig", "perturb_ids"]
