"""Clinical-exam augmentation: what a scanner-native exam does to each sequence, on model-grid patches.

Each channel (sequence) of a patch is changed on its own, as each series of an exam is acquired on its own:
thick slices along a random axis, a small misregistration against the T1Gd (which carries the label, as the
engine's reference grid does), a smooth bias field, contrast (gamma), blur and noise. The label is never
moved by these; head rotations beyond the atlas pose move image and label together (`spatial_augmentation`
in data.py, with `CLINICAL_ROTATION`). The ranges match training/clinical_like.py's exams on a 1.5 mm grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import RandAdjustContrast, RandAffine, RandBiasField, RandGaussianNoise, RandGaussianSmooth

# Model channel order t1, t1c, t2, flair: T1Gd is the 3D series that stays put and is rarely thick.
T1C = 1
# Head rotation beyond the atlas pose (radians, per axis) for `--augmentation clinical`: 20 degrees.
CLINICAL_ROTATION = 0.35
# Z-scored intensities are shifted by this much before a multiplicative bias field (brain voxels sit above -4).
BIAS_OFFSET = 4.0


@dataclass(frozen=True)
class ClinicalAugmentSettings:
    """How often each change happens to a channel, and its range (voxels of the model grid, radians)."""

    probability: float = 0.6              # share of patches that are made clinical-like at all
    thick_prob: float = 0.5               # per 2D channel (T1, T2, FLAIR)
    thick_prob_t1c: float = 0.15          # T1Gd is usually 3D
    thick_factor: tuple[float, float] = (2.0, 4.0)   # slice thickness in voxels: 3-6 mm on the 1.5 mm grid
    shift_prob: float = 0.5               # per channel other than T1Gd
    shift_voxels: float = 2.0             # ±3 mm
    shift_rotation: float = 0.05          # ±3 degrees
    bias_prob: float = 0.4
    bias_coefficient: float = 0.15
    gamma_prob: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    blur_prob: float = 0.15
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    noise_prob: float = 0.2
    noise_std: float = 0.1


def thick_slices(channel: torch.Tensor, axis: int, factor: float) -> torch.Tensor:
    """A (z, y, x) volume as if acquired in slices `factor` voxels thick along `axis` (a box slice profile),
    then interpolated back onto the grid (linear), as the engine resamples a thick series."""
    shape = list(channel.shape)
    low = list(shape)
    low[axis] = max(1, int(round(shape[axis] / factor)))
    volume = channel[None, None].float()
    down = F.interpolate(volume, size=low, mode="area")
    return F.interpolate(down, size=shape, mode="trilinear", align_corners=False)[0, 0]


class ClinicalAugmentation:
    """Changes a (C, z, y, x) patch channel by channel; reproducible from `set_random_state(seed)`."""

    def __init__(self, settings: ClinicalAugmentSettings = ClinicalAugmentSettings()):
        self.settings = s = settings
        self.rng = np.random.default_rng(0)
        self.shift = RandAffine(prob=1.0, rotate_range=(s.shift_rotation,) * 3,
                                translate_range=(s.shift_voxels,) * 3, mode="bilinear", padding_mode="zeros")
        self.bias = RandBiasField(degree=3, coeff_range=(-s.bias_coefficient, s.bias_coefficient), prob=1.0)
        self.gamma = RandAdjustContrast(gamma=s.gamma, prob=1.0)
        self.blur = RandGaussianSmooth(sigma_x=s.blur_sigma, sigma_y=s.blur_sigma, sigma_z=s.blur_sigma, prob=1.0)
        self.noise = RandGaussianNoise(std=s.noise_std, prob=1.0)
        self._monai = (self.shift, self.bias, self.gamma, self.blur, self.noise)

    def set_random_state(self, seed: int) -> "ClinicalAugmentation":
        self.rng = np.random.default_rng(seed)
        for transform in self._monai:
            transform.set_random_state(seed=int(self.rng.integers(2**31)))
        return self

    def __call__(self, image: torch.Tensor, available: np.ndarray | None = None) -> torch.Tensor:
        """The patch with each present channel changed on its own (absent, all-zero channels stay zero)."""
        s, rng = self.settings, self.rng
        if rng.random() >= s.probability:
            return image
        out = image.clone().float()
        for c in range(out.shape[0]):
            if (available is not None and not available[c]) or not bool(out[c].any()):
                continue
            channel = out[c]
            if rng.random() < (s.thick_prob_t1c if c == T1C else s.thick_prob):
                channel = thick_slices(channel, int(rng.integers(3)), float(rng.uniform(*s.thick_factor)))
            if c != T1C and rng.random() < s.shift_prob:
                channel = torch.as_tensor(self.shift(channel[None]))[0]
            if rng.random() < s.bias_prob:
                channel = self._biased(channel)
            if rng.random() < s.gamma_prob:
                channel = self._gamma(channel)
            if rng.random() < s.blur_prob:
                channel = torch.as_tensor(self.blur(channel[None]))[0]
            if rng.random() < s.noise_prob:
                channel = torch.as_tensor(self.noise(channel[None]))[0]
            out[c] = channel.float()
        return out

    def _biased(self, channel: torch.Tensor) -> torch.Tensor:
        """A multiplicative field on the (shifted, positive) z-scored intensities of the brain."""
        inside = channel != 0
        field = torch.as_tensor(np.asarray(self.bias(np.ones((1, *channel.shape), np.float32)))[0])
        return torch.where(inside, (channel + BIAS_OFFSET) * field - BIAS_OFFSET, channel)

    def _gamma(self, channel: torch.Tensor) -> torch.Tensor:
        """Gamma on the brain's intensities (MONAI rescales to [0, 1] and back), background kept at zero."""
        inside = channel != 0
        return torch.where(inside, torch.as_tensor(self.gamma(channel[None]))[0], channel)
