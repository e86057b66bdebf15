"""The preprocessing shared by inference and training: align, mask (skull strip), crop, N4, normalize, resample."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from .bias import BiasCorrector, BiasSettings
from .boxes import bounding_box
from .brain_extraction import BrainExtractionSettings, brain_extractor, method_description
from .errors import InputError
from .images import RegistrationSettings, overlap_fraction, register_rigid, resample_to_reference, same_grid
from .modalities import DISPLAY_NAMES, MODALITIES, reference_modality
from .normalization import NyulStandardizer, zscore
from .settings import SKULL_STRIP_MODES

MIN_OVERLAP = 0.5
NOT_SKULL_STRIPPED = ("the inputs do not look skull-stripped (non-zero voxels reach the image border); "
                      "the model was trained on skull-stripped images, so expect false positives outside "
                      "the brain. Turn skull stripping on, or strip the skull first (e.g. HD-BET).")
# The sequences in the order they resemble the T1 brain template that skull stripping registers.
TEMPLATE_LIKE = ("t1", "t1c", "t2", "flair")


@dataclass(frozen=True)
class NormalizationSpec:
    """How intensities are normalized: "zscore", or "nyul" with landmarks per modality."""

    method: str = "zscore"
    landmarks: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class PreprocessSettings:
    """User-facing preprocessing options; `skull_strip` is "auto" (when the inputs show the head), "on" or "off"."""

    bias_correction: bool = True
    register: bool = False
    skull_strip: str = "auto"
    crop_margin_mm: float = 8.0
    bias: BiasSettings = BiasSettings()
    registration: RegistrationSettings = RegistrationSettings()
    brain_extraction: BrainExtractionSettings = BrainExtractionSettings()


@dataclass
class PreparedCase:
    """Normalized channels cropped to the brain, and how to put results back on the reference grid."""

    reference: sitk.Image
    box: tuple[slice, slice, slice]
    mask: np.ndarray
    channels: dict[str, np.ndarray]
    spacing_zyx: tuple[float, float, float]
    warnings: list[str] = field(default_factory=list)


StageFactory = Callable[[str], ContextManager]


def _no_stage(_name: str) -> ContextManager:
    return nullcontext()


class Preprocessor:
    """Runs each preprocessing step once, the same way for a user's case and a training case."""

    def __init__(self, settings: PreprocessSettings = PreprocessSettings(),
                 normalization: NormalizationSpec = NormalizationSpec()):
        self.settings = settings
        self.normalization = normalization
        self.bias_corrector = BiasCorrector(settings.bias)
        self._brain_extractor = None  # loaded for the first case that needs it
        if settings.skull_strip not in SKULL_STRIP_MODES:
            raise InputError(f"unknown skull stripping '{settings.skull_strip}'; use {', '.join(SKULL_STRIP_MODES)}.")

    def run(self, images: dict[str, sitk.Image], stage: StageFactory = _no_stage,
            check: Callable[[], None] = lambda: None) -> PreparedCase:
        """All steps in order; `stage(name)` wraps each step (timing, progress), `check` may cancel."""
        with stage("align to reference"):
            reference, arrays, warnings = self.align(images)
        check()
        with stage("brain mask"):
            mask, mask_warnings = self.brain_mask(reference, arrays)
            box = brain_box(mask, reference.GetSpacing()[::-1], self.settings.crop_margin_mm)
            arrays = {m: a[box] for m, a in arrays.items()}
            mask = mask[box]
        spacing_zyx = tuple(float(s) for s in reference.GetSpacing()[::-1])
        if self.settings.bias_correction:
            with stage("bias correction"):
                arrays.update(self.correct_bias(arrays, mask, spacing_zyx, warnings, check))
        check()
        with stage("normalization"):
            channels = {m: self.normalize(m, a, mask) for m, a in arrays.items()}
        return PreparedCase(reference, box, mask, channels, spacing_zyx, warnings + mask_warnings)

    def align(self, images: dict[str, sitk.Image]) -> tuple[sitk.Image, dict[str, np.ndarray], list[str]]:
        """Resample every input onto the reference input's grid in physical space."""
        if not images:
            raise InputError("no input volume given: give at least one of T1, T1Gd, T2, FLAIR.")
        unknown = set(images) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modality {sorted(unknown)}; use {', '.join(MODALITIES)}.")
        ref_name = reference_modality(list(images))
        reference = images[ref_name]
        arrays: dict[str, np.ndarray] = {}
        warnings: list[str] = []
        for modality, image in images.items():
            if modality == ref_name:
                arrays[modality] = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
                continue
            overlap = overlap_fraction(image, reference)
            if overlap < MIN_OVERLAP:
                raise InputError(
                    f"{DISPLAY_NAMES[modality]} and {DISPLAY_NAMES[ref_name]} do not overlap in physical "
                    f"space ({overlap:.0%} of the {DISPLAY_NAMES[ref_name]} brain is covered): check that "
                    "they belong to the same patient and session, or register them first.")
            if self.settings.register:
                transform = register_rigid(image, reference, self.settings.registration)
                image = resample_to_reference(image, reference, transform)
            elif not same_grid(image, reference):
                warnings.append(f"{DISPLAY_NAMES[modality]} resampled onto the {DISPLAY_NAMES[ref_name]} grid.")
                image = resample_to_reference(image, reference)
            arrays[modality] = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
        return reference, arrays, warnings

    def brain_mask(self, reference: sitk.Image, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """The foreground voxels; within them the registered brain template when the skull is to be stripped."""
        mask = foreground_mask(arrays)
        stripped = looks_skull_stripped(mask)
        mode = self.settings.skull_strip
        if mode == "off" or (mode == "auto" and stripped):
            return mask, [] if stripped else [NOT_SKULL_STRIPPED]
        modality = next(m for m in TEMPLATE_LIKE if m in arrays)
        image = sitk.GetImageFromArray(arrays[modality])
        image.CopyInformation(reference)
        if self._brain_extractor is None:
            self._brain_extractor = brain_extractor(self.settings.brain_extraction)
        mask &= self._brain_extractor.mask(image)
        if mode == "on":
            return mask, []
        return mask, [f"the inputs were not skull-stripped: the skull was stripped by "
                      f"{method_description(self.settings.brain_extraction.method)} on the {DISPLAY_NAMES[modality]}; "
                      "check the result near the brain's edge."]

    def correct_bias(self, arrays: dict[str, np.ndarray], mask: np.ndarray, spacing_zyx: tuple[float, ...],
                     warnings: list[str], check: Callable[[], None]) -> dict[str, np.ndarray]:
        """N4 on every channel that allows it, `bias.workers` channels at a time (ITK releases the GIL)."""
        todo = []
        for modality, array in arrays.items():
            reason = self.bias_corrector.skip_reason(array, mask)
            if reason:
                warnings.append(f"{DISPLAY_NAMES[modality]} {reason}.")
            else:
                todo.append(modality)

        def correct(modality: str) -> np.ndarray:
            check()
            return self.bias_corrector.correct(arrays[modality], mask, spacing_zyx[::-1])

        if len(todo) <= 1 or self.settings.bias.workers <= 1:
            return {m: correct(m) for m in todo}
        with ThreadPoolExecutor(min(len(todo), self.settings.bias.workers)) as pool:
            futures = {m: pool.submit(correct, m) for m in todo}
            try:
                return {m: future.result() for m, future in futures.items()}
            finally:
                for future in futures.values():
                    future.cancel()

    def normalize(self, modality: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Normalize one channel as the model card says."""
        if self.normalization.method == "zscore":
            return zscore(image, mask)
        if self.normalization.method == "nyul":
            return NyulStandardizer(self.normalization.landmarks[modality]).apply(image, mask)
        raise InputError(f"unknown normalization '{self.normalization.method}' in the model card.")


def foreground_mask(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Voxels that differ from the background in any input: the brain when the inputs are skull-stripped."""
    mask = np.zeros(next(iter(arrays.values())).shape, dtype=bool)
    for array in arrays.values():
        mask |= array != background_value(array)
    return mask


def background_value(array: np.ndarray) -> float:
    """What a skull-stripped image holds outside the brain: 0, or its minimum when that fills all eight corners
    (images normalized before they were given, as in BraTS 2013, have a negative background)."""
    corners = array[::array.shape[0] - 1, ::array.shape[1] - 1, ::array.shape[2] - 1]
    low = array.min()
    return float(low) if low < 0 and np.all(corners == low) else 0.0


def looks_skull_stripped(mask: np.ndarray) -> bool:
    """False when the foreground reaches the image border or fills most of the image (the head is there)."""
    faces = [mask[0], mask[-1], mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]]
    border = np.mean(np.concatenate([f.ravel() for f in faces]))
    return not (border > 0.3 or mask.mean() > 0.6)


def brain_box(mask: np.ndarray, spacing_zyx: tuple[float, ...], margin_mm: float) -> tuple[slice, ...]:
    """The bounding box of the mask plus a margin in mm, as index slices."""
    return bounding_box(mask, [int(np.ceil(margin_mm / spacing)) for spacing in spacing_zyx])


def model_grid_shape(shape: tuple[int, ...], spacing_zyx: tuple[float, ...],
                     target_spacing_zyx: tuple[float, ...]) -> tuple[int, int, int]:
    """Voxel counts that cover the same physical extent at the model's spacing."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing_zyx, target_spacing_zyx))


def resize(volume: torch.Tensor, shape: tuple[int, ...], mode: str = "trilinear") -> torch.Tensor:
    """Resample a (C, z, y, x) tensor to another grid over the same physical extent."""
    if tuple(volume.shape[1:]) == tuple(shape):
        return volume
    if mode == "nearest":
        return F.interpolate(volume[None].float(), size=shape, mode="nearest-exact")[0]
    return F.interpolate(volume[None].float(), size=shape, mode="trilinear", align_corners=False)[0]


def stack_channels(channels: dict[str, np.ndarray], order: tuple[str, ...] | list[str]) -> np.ndarray:
    """Stack channels in the model's order; missing modalities become zero channels."""
    shape = next(iter(channels.values())).shape
    return np.stack([channels.get(m, np.zeros(shape, dtype=np.float32)) for m in order])
