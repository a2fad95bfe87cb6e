"""robustok.seeding: the formulas that the recorded results were made with, and streams that do not collide."""

from robustok.seeding import (
    batch_seed,
    data_stream_seed,
    pair_batch_seed,
    pfid_cell_seed,
    seeded_generator,
    step_seed,
)


def test_the_formulas_are_the_ones_the_results_were_made_with():
    assert step_seed(3, 10, 1) == 3 * 1_000_003 + 10 * 4099 + 7919
    assert step_seed(2**62, 0, 0) < 2**63 - 1  # stays a valid torch seed
    assert data_stream_seed(2, 7) == 2_000_013
    assert batch_seed(5, 0) == 5 and batch_seed(5, 2) == 5 + 2_000_006
    assert pair_batch_seed(1, 4, "sample") == 1_000_007
    assert pair_batch_seed(1, 4, "mask") == 1_000_007 + 500_000_009
    assert pair_batch_seed(1, 4, "held_out") == 1_000_007 + 900_000_011
    assert pfid_cell_seed(0, 3, 2) == 3 * 7_919 + 2 * 104_729


def test_post_train_data_streams_do_not_collide_within_a_study():
    seeds = range(4)
    batches = range(200)  # 16,000 pairs at batch 100 and 1,000 held-out samples, the largest study's stores
    streams = [pair_batch_seed(s, b, k) for s in seeds for b in batches for k in ("sample", "mask", "held_out")]
    assert len(set(streams)) == len(streams)


def test_seeded_generator_repeats():
    a = seeded_generator(pair_batch_seed(0, 1, "mask"))
    b = seeded_generator(pair_batch_seed(0, 1, "mask"))
    import torch

    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
