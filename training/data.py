"""Patches for training: tumour oversampling, MONAI augmentation and modality dropout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from braintumorseg.errors import InputError
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

from .augment import CLINICAL_ROTATION, ClinicalAugmentation, ClinicalAugmentSettings
from .files import read_json

MANIFEST = "manifest.json"

# Modality subsets that dropout favours (indices in MODALITIES order t1, t1c, t2, flair).
FAVOURED_SUBSETS = ((3,), (1, 3), (0, 3), (1,), (2, 3))


@dataclass
class CachedCase:
    """One prepared case held in memory."""

    name: str
    image: np.ndarray          # (4, z, y, x) float16, zero where a channel is missing
    regions: np.ndarray        # (3, z, y, x) uint8
    channels: np.ndarray       # (4,) bool
    regions_present: np.ndarray  # (3,) bool
    tumour: np.ndarray         # (n, 3) voxel indices of the whole tumour


def read_manifest(cache: Path) -> dict[str, Any]:
    """The cache's manifest, or a clear error if the folder is not a prepared cache."""
    path = Path(cache) / MANIFEST
    if not path.is_file():
        raise InputError(f"{cache} is not a prepared cache (no {MANIFEST}); give the --cache folder of "
                         "`python -m training prepare`.")
    manifest = read_json(path, "prepare the cache again")
    if not isinstance(manifest.get("cases"), list) or "spacing" not in manifest:
        raise InputError(f"{path} lacks the cases or spacing of a prepared cache; prepare the cache again.")
    return manifest


def load_cases(cache: Path, names: list[str] | None = None) -> list[CachedCase]:
    """Load prepared cases (all in the manifest, or the given names)."""
    entries = [e for e in read_manifest(cache)["cases"] if names is None or e["name"] in names]
    missing = [e["file"] for e in entries if not (cache / e["file"]).is_file()]
    if missing:
        raise InputError(f"the cache {cache} lacks {', '.join(missing)}, which its manifest lists; "
                         "prepare it again (or unpack every part of it).")
    cases = []
    for entry in entries:
        with np.load(cache / entry["file"]) as data:
            regions = data["regions"]
            cases.append(CachedCase(entry["name"], data["image"], regions, data["channels"],
                                    data["regions_present"], np.argwhere(regions[0] > 0)))
    return cases


def spatial_augmentation(rotation: float = 0.26, prob: float = 0.3) -> Compose:
    """Rotations (radians per axis), scaling and flips on {"image", "label"} patches."""
    keys = ["image", "label"]
    return Compose([
        RandAffined(keys, prob=prob, rotate_range=(rotation,) * 3, scale_range=(0.15, 0.15, 0.15),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
    ])


@dataclass(frozen=True)
class IntensityStrength:
    """Ranges of the intensity augmentation: per-channel scale and shift, gamma, blur and noise."""

    scale: float
    shift: float
    gamma: tuple[float, float]
    gamma_prob: float
    noise_std: float
    blur_prob: float = 0.0


# "strong" widens scale, shift, gamma and noise (other scanners' contrast) and blurs (thicker slices);
# "clinical" is "strong" after the clinical-exam changes of augment.py and wider head rotations.
INTENSITY_STRENGTHS = {
    "standard": IntensityStrength(0.1, 0.1, (0.7, 1.5), 0.2, 0.05),
    "strong": IntensityStrength(0.25, 0.2, (0.65, 1.6), 0.3, 0.1, blur_prob=0.2),
    "clinical": IntensityStrength(0.25, 0.2, (0.65, 1.6), 0.3, 0.1, blur_prob=0.2),
}
AUGMENTATIONS = tuple(INTENSITY_STRENGTHS)


def intensity_augmentation(strength: str = "standard") -> Compose:
    """Intensity scale and shift per channel, gamma, blur (if any) and noise on {"image"}."""
    if strength not in INTENSITY_STRENGTHS:
        raise ValueError(f"unknown augmentation '{strength}'; use one of {', '.join(AUGMENTATIONS)}")
    ranges = INTENSITY_STRENGTHS[strength]
    blur = [RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0),
                                prob=ranges.blur_prob)] if ranges.blur_prob else []
    return Compose([
        RandScaleIntensityd("image", factors=ranges.scale, prob=0.5, channel_wise=True),
        RandShiftIntensityd("image", offsets=ranges.shift, prob=0.5, channel_wise=True),
        RandAdjustContrastd("image", gamma=ranges.gamma, prob=ranges.gamma_prob),
        *blur,
        RandGaussianNoised("image", std=ranges.noise_std, prob=0.15),
    ])


@dataclass(frozen=True)
class SamplerSettings:
    patch: int = 64
    foreground_fraction: float = 0.67
    modality_dropout: float = 0.5
    augmentation: str = "standard"
    clinical: ClinicalAugmentSettings = ClinicalAugmentSettings()


class PatchSampler:
    """Draws a batch for a given step from a seed, so that resuming reproduces the same batches."""

    def __init__(self, cases: list[CachedCase], settings: SamplerSettings, seed: int, rank: int = 0):
        self.cases = cases
        self.settings = settings
        self.seed = seed
        self.rank = rank
        clinical = settings.augmentation == "clinical"
        self.spatial = spatial_augmentation(CLINICAL_ROTATION, 0.5) if clinical else spatial_augmentation()
        self.intensity = intensity_augmentation(settings.augmentation)
        self.clinical = ClinicalAugmentation(settings.clinical) if clinical else None

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image, regions, region mask) for `size` patches."""
        rng = np.random.default_rng([self.seed, step, self.rank])
        self.spatial.set_random_state(seed=int(rng.integers(2**31)))
        self.intensity.set_random_state(seed=int(rng.integers(2**31)))
        if self.clinical is not None:
            self.clinical.set_random_state(int(rng.integers(2**31)))
        items = [self._sample(self.cases[int(rng.integers(len(self.cases)))], rng) for _ in range(size)]
        return tuple(torch.stack(parts) for parts in zip(*items))

    def _sample(self, case: CachedCase, rng: np.random.Generator):
        p = self.settings.patch
        if len(case.tumour) and rng.random() < self.settings.foreground_fraction:
            centre = case.tumour[int(rng.integers(len(case.tumour)))]
        else:
            centre = np.array([rng.integers(n) for n in case.image.shape[1:]])
        image = crop(case.image, centre, p).astype(np.float32)
        label = crop(case.regions, centre, p).astype(np.float32)
        out = self.spatial({"image": torch.from_numpy(image), "label": torch.from_numpy(label)})
        image = torch.as_tensor(out["image"]).float()
        if self.clinical is not None:  # each sequence as its own series; the brain is then their union
            image = self.clinical(image, case.channels)
        brain = image.abs().sum(0, keepdim=True) > 0
        image = torch.as_tensor(self.intensity({"image": image})["image"]).float()
        keep = torch.from_numpy(self._channels(case.channels, rng).astype(np.float32))[:, None, None, None]
        image = torch.where(brain, image, 0.0) * keep
        regions_present = torch.from_numpy(case.regions_present.astype(np.float32))
        return image, torch.as_tensor(out["label"]).float(), regions_present

    def _channels(self, available: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if available.sum() < 4 or rng.random() >= self.settings.modality_dropout:
            return available.copy()
        keep = np.zeros(4, dtype=bool)
        if rng.random() < 0.6:
            keep[list(FAVOURED_SUBSETS[int(rng.integers(len(FAVOURED_SUBSETS)))])] = True
        else:
            while not keep.any():
                keep = rng.random(4) < 0.5
        return keep


class StepBatches(torch.utils.data.Dataset):
    """The batches of steps start..stop-1 as a dataset, so DataLoader workers can prepare them ahead."""

    def __init__(self, sampler: PatchSampler, start: int, stop: int, size: int):
        self.sampler, self.start, self.stop, self.size = sampler, start, stop, size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.sampler.batch(self.start + index, self.size)


def _one_thread(_worker: int) -> None:
    """Each loader worker computes on one thread (a module function, so spawned workers can unpickle it)."""
    torch.set_num_threads(1)


def step_batches(sampler: PatchSampler, start: int, stop: int, size: int, workers: int = 0,
                 pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The batches of steps start..stop-1 in order: drawn here, or prefetched by `workers` processes.

    Each batch depends only on (seed, step, rank), so workers yield exactly the batches the loop would draw.
    """
    batches = StepBatches(sampler, start, stop, size)
    if workers == 0:
        return (batches[i] for i in range(len(batches)))
    return iter(torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                            pin_memory=pin, prefetch_factor=4,
                                            worker_init_fn=_one_thread))


def crop(volume: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """A (C, size, size, size) crop centred on a voxel, zero-padded where it leaves the volume."""
    out = np.zeros((volume.shape[0], size, size, size), dtype=volume.dtype)
    src, dst = [], []
    for axis, c in enumerate(centre):
        n = volume.shape[axis + 1]
        start = int(c) - size // 2
        lo, hi = max(0, start), min(n, start + size)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(slice(None), *dst)] = volume[(slice(None), *src)]
    return out
