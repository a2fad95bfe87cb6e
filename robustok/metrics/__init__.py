"""Evaluation: feature networks, Fréchet distance, rFID/pFID, PSNR/SSIM/LPIPS, codebook usage, IS, precision/recall."""

from robustok.metrics.features import NAMES as FEATURE_NAMES
from robustok.metrics.features import describe, get_feature_net
from robustok.metrics.frechet import GaussianStats, RunningStats, frechet_distance, trace_sqrt_product
from robustok.metrics.pfid import PFIDConfig, delta_triplet
from robustok.metrics.reconstruction import psnr, ssim, usage_and_perplexity

__all__ = [
    "FEATURE_NAMES",
    "get_feature_net",
    "describe",
    "GaussianStats",
    "RunningStats",
    "frechet_distance",
    "trace_sqrt_product",
    "PFIDConfig",
    "delta_triplet",
    "psnr",
    "ssim",
    "usage_and_perplexity",
]
