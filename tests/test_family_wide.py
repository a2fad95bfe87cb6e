"""experiments/tokenizer_family_wide.py: the beyond-the-noise test on the recorded family and on a wider one, and
the members' training lengths."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "tokenizer_family_wide", ROOT / "experiments" / "tokenizer_family_wide.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_recorded_family_does_not_differ_beyond_its_seed_noise_and_a_wider_one_does():
    wide = _module()
    family = json.loads(wide.FAMILY.read_text())["tokenizers"]
    b = wide.beyond_noise(family, "gfid_cfg")
    assert b["df"] == [11, 4] and 0.3 < b["p"] < 0.7 and not b["beyond_noise"]  # docs: F = 1.13, p = 0.50
    spread = family + [{"name": f"new{i}", "gfid_cfg": 60.0 + 10 * i} for i in range(4)]
    assert wide.beyond_noise(spread, "gfid_cfg")["beyond_noise"]


def test_member_lengths_and_the_design_order():
    wide = _module()
    from tokenizer_family import member_steps  # on sys.path through the module above

    assert [member_steps("half", wide.WIDE[n][1]) for n in ("baseline-steps150", "robust-steps300")] == [150, 300]
    assert member_steps("half", ["@half"]) == 600 and member_steps("half", []) == 1200
    assert list(wide.WIDE)[:2] == ["baseline-steps150", "robust-extreme"]  # the schedule fixed in the docstring
