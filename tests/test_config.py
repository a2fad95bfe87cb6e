import pytest

from robustok.config import load_config
from robustok.errors import ConfigError
from robustok.tokenizer.train import TokenizerTrainConfig
from tests.helpers import ROOT


def test_yaml_and_overrides():
    cfg = load_config(
        TokenizerTrainConfig, ROOT / "configs/tokenizer/fmnist-robust.yaml", ["train.steps=7", "perturb.beta=0.2"]
    )
    assert cfg.train.steps == 7 and cfg.perturb.beta == 0.2 and cfg.perturb.enabled
    base = load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/fmnist-baseline.yaml")
    assert not base.perturb.enabled and base.model == cfg.model


@pytest.mark.parametrize(
    "override,key",
    [("train.stepz=3", "train.stepz"), ("model.codebook_size=big", "model.codebook_size"), ("nosuch.key=1", "nosuch")],
)
def test_bad_keys_are_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(TokenizerTrainConfig, ROOT / "configs/tokenizer/fmnist-robust.yaml", [override])


def test_unknown_key_in_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  codebok_size: 12\n")
    with pytest.raises(ConfigError, match="codebok_size"):
        load_config(TokenizerTrainConfig, f)


def test_missing_file_and_malformed_override(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(TokenizerTrainConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TokenizerTrainConfig, None, ["train.steps"])


def test_cross_section_validation():
    cfg = load_config(TokenizerTrainConfig, None, ["data.channels=3"])
    with pytest.raises(ConfigError, match="data.channels"):
        cfg.validate()
