"""Time estimates: CPU model from /proc/cpuinfo, the step probe of the training loop, durations."""

import pytest
import torch

from robustok.tokenizer.train import TokenizerTask
from robustok.train import estimate
from robustok.train.estimate import ThroughputProbe, cpu_model, device_name, format_duration
from robustok.train.loop import train
from tests.helpers import needs_fmnist, tiny_train_config


def test_cpu_model_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
    )
    assert cpu_model(info) == "AMD EPYC 7B13 64-Core Processor"
    assert cpu_model(tmp_path / "missing")  # a fallback string, never an error
    assert "threads" in device_name("cpu")


def test_format_duration():
    assert format_duration(42) == "42 s"
    assert format_duration(30 * 60) == "30.0 min"
    assert format_duration(2 * 3600 + 5 * 60) == "2 h 05 min"


def test_probe_times_the_steps_after_the_warm_up(monkeypatch):
    clock = iter(range(0, 1000))  # each perf_counter call: one second later
    monkeypatch.setattr(estimate.time, "perf_counter", lambda: float(next(clock)))
    lines = []
    probe = ThroughputProbe(total=120, start=20, device="cpu", world=2, warmup=3, measure=4, log=lines.append)
    batches = [(torch.zeros(8, 1), None)] * 30
    assert list(probe.wrap(batches)) == batches  # batches pass through unchanged
    r = probe.result
    assert r["seconds_per_step"] == pytest.approx(0.25)  # two clock reads 1 s apart around 4 steps
    assert r["images_per_s"] == pytest.approx(4 * 8 * 2 / 1.0)
    assert r["expected_total_s"] == pytest.approx(100 * 0.25)
    assert r["expected_left_s"] == pytest.approx((120 - 27) * 0.25)
    assert len(lines) == 1 and "img/s" in lines[0] and "expected total" in lines[0]


def test_probe_is_silent_for_short_runs_and_other_ranks():
    lines = []
    for probe, n in (
        (ThroughputProbe(13, 0, "cpu", log=lines.append), 13),  # the loop asks for 13 batches
        (ThroughputProbe(100, 0, "cpu", enabled=False, log=lines.append), 100),
    ):
        list(probe.wrap([(torch.zeros(2),)] * n))
        assert probe.result is None
    assert lines == []


@needs_fmnist
def test_training_prints_its_expected_wall_time(tmp_path, capsys):
    cfg = tiny_train_config(tmp_path / "r", "train.steps=14")
    train(TokenizerTask(cfg), cfg.run, cfg.train, cfg.data, full_config=cfg)
    out = capsys.readouterr().out
    assert "measured" in out and "expected total" in out and "for 14 steps" in out
