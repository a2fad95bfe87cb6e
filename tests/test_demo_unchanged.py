"""The comparison behind `experiments/demo_unchanged.py` (numbers unchanged by a refactor)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "demo_unchanged", Path(__file__).resolve().parents[1] / "experiments" / "demo_unchanged.py"
)
demo_unchanged = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_unchanged)


def test_normalized_drops_times_and_output_folder():
    res = {
        "wall_time_s": 3.0,
        "stage_time_s": {"a": 1.0},
        "baseline": {"tokenizer": "/tmp/q/tokenizers/b", "rfid": 1.5},
    }
    assert demo_unchanged.normalized(res, "/tmp/q") == {"baseline": {"tokenizer": "<out>/tokenizers/b", "rfid": 1.5}}


def test_differences_name_each_changed_value():
    a = {"points": {"b": {"gfid": 1.0, "pfid": float("nan")}}, "list": [1, 2], "gone": 1}
    b = {"points": {"b": {"gfid": 1.0000001, "pfid": float("nan")}}, "list": [1, 3], "new": 2}
    diff = list(demo_unchanged.differences(a, b))
    assert diff == [
        ".gone: only in reference",
        ".list[1]: 2 -> 3",
        ".new: only in this run",
        ".points.b.gfid: 1.0 -> 1.0000001",
    ]
    assert list(demo_unchanged.differences(a, a)) == []
