"""Image tokenizers: model, quantizer, latent perturbation, backbones."""
from robustok.tokenizer.model import Tokenizer, TokenizerConfig, TokenizerOutput
from robustok.tokenizer.perturbation import PerturbationConfig, perturb_ids

__all__ = ["Tokenizer", "TokenizerConfig", "TokenizerOutput", "PerturbationConfig", "perturb_ids"]
