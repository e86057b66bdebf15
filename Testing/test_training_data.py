"""The patch sampler: channel dropout, the regions a case has, reproducible batches, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import FAVOURED_SUBSETS, CachedCase, PatchSampler, SamplerSettings


def _case(channels, regions_present=(True, True, True), shape=(24, 24, 24), name="c") -> CachedCase:
    rng = np.random.default_rng(0)
    available = np.array(channels, bool)
    image = (rng.normal(size=(4, *shape)) + 3) * available[:, None, None, None]
    regions = np.zeros((3, *shape), np.uint8)
    regions[:, 8:16, 8:16, 8:16] = np.array(regions_present, np.uint8)[:, None, None, None]
    return CachedCase(name, image.astype(np.float16), regions, available, np.array(regions_present),
                      np.argwhere(regions[0] > 0))


def test_dropout_keeps_only_available_channels():
    """A FLAIR+T1c case never gets T1 or T2 back; a complete case sees many subsets, never none."""
    partial = PatchSampler([_case([False, True, False, True])], SamplerSettings(patch=16, modality_dropout=1.0), 0)
    complete = PatchSampler([_case([True] * 4)], SamplerSettings(patch=16, modality_dropout=1.0), 0)
    subsets = set()
    for step in range(40):
        image, _, _ = partial.batch(step, 2)
        kept = image.flatten(2).abs().sum(2) > 0
        assert not kept[:, [0, 2]].any() and kept[:, [1, 3]].all()
        image, _, _ = complete.batch(step, 2)
        for row in (image.flatten(2).abs().sum(2) > 0).tolist():
            assert any(row)
            subsets.add(tuple(i for i, k in enumerate(row) if k))
    assert len(subsets) >= 6 and set(FAVOURED_SUBSETS) <= subsets


def test_sampler_passes_the_regions_a_case_has():
    sampler = PatchSampler([_case([True, False, False, True], (True, False, False))], SamplerSettings(patch=16), 0)
    _, target, present = sampler.batch(0, 2)
    assert present.tolist() == [[1.0, 0.0, 0.0]] * 2
    assert target[:, 1:].sum() == 0


def test_batches_depend_only_on_seed_step_and_rank():
    cases = [_case([True] * 4, name="a"), _case([False, True, False, True], name="b")]
    first = PatchSampler(cases, SamplerSettings(patch=16), seed=3).batch(7, 2)
    again = PatchSampler(cases, SamplerSettings(patch=16), seed=3).batch(7, 2)
    other_rank = PatchSampler(cases, SamplerSettings(patch=16), seed=3, rank=1).batch(7, 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other_rank[0])


def _patch_statistics(augmentation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of 120 patches of unit-noise images."""
    sampler = PatchSampler([_case([True] * 4)], SamplerSettings(16, modality_dropout=0.0,
                                                                augmentation=augmentation), seed=0)
    flat = torch.cat([sampler.batch(step, 2)[0].flatten(2) for step in range(60)])
    return flat.mean(2), flat.std(2)


def test_strong_augmentation_blurs_and_varies_contrast_more():
    """Unit noise keeps a spread near 1 under standard augmentation; strong blurs some patches."""
    standard_mean, standard_spread = _patch_statistics("standard")
    strong_mean, strong_spread = _patch_statistics("strong")
    assert standard_spread.min() > 0.6 and (strong_spread < 0.5).any()
    assert strong_mean.std() > standard_mean.std()
    with pytest.raises(ValueError, match="unknown augmentation"):
        PatchSampler([_case([True] * 4)], SamplerSettings(16, augmentation="extreme"), seed=0)
