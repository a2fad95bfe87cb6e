"""Named presets: every config shipped in the package loads by its name, as its path does, from any folder."""

from __future__ import annotations

import pytest

from robustok.config import load_config
from robustok.errors import ConfigError
from robustok.generator.task import load_generator_config
from robustok.posttrain.train import PostTrainConfig
from robustok.presets import preset_names, preset_path, resolve_config
from robustok.tokenizer.train import TokenizerTrainConfig


def test_every_shipped_preset_loads_by_name_from_an_unrelated_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in preset_names("tokenizer"):
        assert load_config(TokenizerTrainConfig, name) == load_config(
            TokenizerTrainConfig, preset_path("tokenizer", name)
        )
    for name in preset_names("generator"):
        by_name = load_generator_config(name)
        assert by_name == load_generator_config(preset_path("generator", name))
    assert load_generator_config("fmnist-diffusion").model.kind == "diffusion"
    for name in (n for n in preset_names("posttrain") if n.startswith("fmnist")):  # imagenet: needs its files
        assert load_config(PostTrainConfig, f"{name}.yaml") == load_config(
            PostTrainConfig, preset_path("posttrain", name)
        )


def test_a_file_wins_over_a_preset_and_unknown_names_list_the_presets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fmnist-robust").write_text("train:\n  steps: 7\n")
    assert load_config(TokenizerTrainConfig, "fmnist-robust").train.steps == 7
    with pytest.raises(ConfigError, match="tokenizer preset: fmnist-baseline, fmnist-kl, fmnist-robust"):
        resolve_config("fmnist-nope", "tokenizer")
    with pytest.raises(ConfigError, match="no generator preset 'x'"):
        preset_path("generator", "x")
