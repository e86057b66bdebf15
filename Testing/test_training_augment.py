"""Clinical-exam augmentation on small arrays: each change does what it says, channel by channel, and the
labels stay aligned with the T1Gd (misregistration moves the other sequences, never the label)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from training.augment import T1C, ClinicalAugmentation, ClinicalAugmentSettings, thick_slices
from training.data import CachedCase, PatchSampler, SamplerSettings

NOTHING = ClinicalAugmentSettings(probability=1.0, thick_prob=0.0, thick_prob_t1c=0.0, shift_prob=0.0,
                                  bias_prob=0.0, gamma_prob=0.0, blur_prob=0.0, noise_prob=0.0)


def _patch(size: int = 24, seed: int = 0) -> torch.Tensor:
    """Four z-scored-like channels: a ball of brain with structure along every axis, zero outside."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij")
    ball = z ** 2 + y ** 2 + x ** 2 < 0.8
    channels = [np.where(ball, np.sin(6 * z + c) + np.cos(5 * y) + np.sin(4 * x) + rng.normal(0, 0.05, ball.shape),
                         0.0) for c in range(4)]
    return torch.tensor(np.stack(channels), dtype=torch.float32)


def _only(**changes) -> ClinicalAugmentation:
    return ClinicalAugmentation(replace(NOTHING, **changes)).set_random_state(1)


def test_thick_slices_average_along_one_axis_only():
    volume = torch.zeros(16, 16, 16)
    volume[8] = 1.0  # one bright slice across axis 0
    thick = thick_slices(volume, axis=0, factor=4.0)
    assert thick.shape == volume.shape
    assert thick[8].max() < 0.6 and (thick[:, 0, 0] > 0).sum() >= 4  # spread over the neighbouring slices
    assert abs(float(thick.sum()) - 16 * 16) < 0.2 * 16 * 16  # the signal is averaged, not lost
    across = thick_slices(volume, axis=1, factor=4.0)  # thick along another axis: the slice is untouched
    assert torch.allclose(across, volume, atol=1e-5)


def test_no_change_when_nothing_is_drawn_and_probability_zero_is_identity():
    patch = _patch()
    assert torch.equal(_only()(patch), patch)
    never = ClinicalAugmentation(ClinicalAugmentSettings(probability=0.0)).set_random_state(0)
    assert torch.equal(never(patch), patch)


def test_misregistration_moves_other_sequences_but_never_t1gd():
    patch = _patch()
    out = _only(shift_prob=1.0)(patch)
    assert torch.equal(out[T1C], patch[T1C])
    for channel in (0, 2, 3):
        assert (out[channel] - patch[channel]).abs().mean() > 0.02


def test_each_channel_gets_its_own_bias_field_and_background_stays_zero():
    patch = _patch()
    out = _only(bias_prob=1.0)(patch)
    inside = patch[0] != 0
    ratios = [((out[c] + 4.0) / (patch[c] + 4.0))[inside] for c in range(4)]
    assert all(float(r.std()) > 0.01 for r in ratios)  # a field, not a constant
    assert not torch.allclose(ratios[0], ratios[1], atol=1e-3)  # different per channel
    assert torch.all(out[:, ~inside] == 0)


def test_gamma_blur_and_noise_change_intensities_not_geometry():
    patch = _patch()
    for changes in ({"gamma_prob": 1.0}, {"blur_prob": 1.0}, {"noise_prob": 1.0}):
        out = _only(**changes)(patch)
        assert not torch.allclose(out, patch), changes
        assert out.shape == patch.shape
    gamma = _only(gamma_prob=1.0)(patch)
    assert torch.all(gamma[:, patch[0] == 0] == 0)


def test_absent_channels_stay_zero():
    patch = _patch()
    patch[2] = 0
    out = ClinicalAugmentation(replace(ClinicalAugmentSettings(probability=1.0), noise_prob=1.0, thick_prob=1.0,
                                       shift_prob=1.0)).set_random_state(3)(patch, np.array([1, 1, 0, 1], bool))
    assert torch.all(out[2] == 0)


def _case(size: int = 32) -> CachedCase:
    patch = _patch(size).numpy().astype(np.float16)
    z, y, x = np.meshgrid(*[np.arange(size)] * 3, indexing="ij")
    tumour = ((z - 16) ** 2 + (y - 14) ** 2 + (x - 18) ** 2 < 30)
    regions = np.stack([tumour, tumour, tumour]).astype(np.uint8)
    patch[T1C] = np.where(tumour, 5.0, patch[T1C])  # enhancing tumour bright on T1Gd
    return CachedCase("c", patch, regions, np.ones(4, bool), np.ones(3, bool), np.argwhere(tumour))


def test_sampler_clinical_batches_are_reproducible_and_keep_label_on_t1gd():
    case = _case()
    sampler = PatchSampler([case], SamplerSettings(patch=20, augmentation="clinical", modality_dropout=0.0), 5)
    image, label, _ = sampler.batch(7, 3)
    again, label_again, _ = sampler.batch(7, 3)
    assert torch.equal(image, again) and torch.equal(label, label_again)
    plain = PatchSampler([case], SamplerSettings(patch=20, augmentation="strong", modality_dropout=0.0), 5)
    assert not torch.equal(plain.batch(7, 3)[0], image)
    thick = SamplerSettings(patch=20, augmentation="clinical", modality_dropout=0.0,
                            clinical=ClinicalAugmentSettings(probability=1.0, thick_prob=1.0))
    assert PatchSampler([case], thick, 5).clinical.settings.thick_prob == 1.0
    assert not torch.equal(PatchSampler([case], thick, 5).batch(7, 3)[0], image)
    for index in range(3):  # the bright T1Gd tumour is where the label is, whatever rotation was drawn
        t1c, tumour = image[index, T1C], label[index, 0] > 0
        if tumour.sum() > 20 and (~tumour).sum() > 20:
            assert t1c[tumour].mean() > t1c[~tumour & (t1c != 0)].mean() + 1.0
