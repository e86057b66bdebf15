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
from scipy.ndimage import distance_transform_edt

from .bias import BiasCorrector, BiasSettings
from .boxes import bounding_box
from .brain_extraction import AtlasBrainExtractor, BrainExtractionSettings, brain_extractor, method_description
from .errors import InputError
from .images import overlap_fraction, resample_to_reference, same_grid
from .network_space import TRAINING_ORIENTATION, atlas_grid, reoriented
from .registration import (FAILED_ALIGNMENT, GOOD_ALIGNMENT, SAME_GRID_GAIN, AlignmentRating, RegistrationSettings,
                           coarse, edge_alignment, rate, register_rigid)
from .modalities import DISPLAY_NAMES, MODALITIES, reference_modality
from .normalization import NyulStandardizer, zscore
from .settings import NETWORK_SPACES, REGISTER_MODES, SKULL_STRIP_MODES

MIN_OVERLAP = 0.5
SKULL_KEPT, SKULL_ALREADY_STRIPPED = "off", "not needed: the inputs are skull-stripped"  # the report's words
NOT_SKULL_STRIPPED = ("the inputs do not look skull-stripped (non-zero voxels reach the image border); "
                      "the model was trained on skull-stripped images, so expect false positives outside "
                      "the brain. Turn skull stripping on, or strip the skull first (e.g. HD-BET).")
# The sequences in the order they resemble the T1 brain template that skull stripping registers.
TEMPLATE_LIKE = ("t1", "t1c", "t2", "flair")
THICK_SLICE_MM = 2.5  # 3D acquisitions and BraTS copies are 1-1.5 mm apart, 2D clinical series 3-6 mm
N4_TUMOUR_MARGIN_MM = 5.0  # `Preprocessor.refit_bias` leaves the tumour grown by this much out of N4's fit


@dataclass(frozen=True)
class NormalizationSpec:
    """How intensities are normalized: "zscore", or "nyul" with landmarks per modality."""

    method: str = "zscore"
    landmarks: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True)
class PreprocessSettings:
    """User-facing preprocessing options. `register`: "auto" aligns the sequences that are on other grids or that
    a quick check finds misaligned, "on" all, "off" none (True and False mean "on" and "off"). `skull_strip`:
    "auto" when the inputs show the head, "on" or "off". `network_space`: "atlas" shows the network the case
    turned into the atlas pose, "native" the reference grid reoriented; "auto" the atlas pose unless the inputs
    are already one co-registered, skull-stripped set (a BraTS-like copy)."""

    bias_correction: bool = True
    register: str = "auto"
    skull_strip: str = "auto"
    network_space: str = "auto"
    crop_margin_mm: float = 8.0
    # z-score statistics of a brain mask made here by skull stripping come from the mask eroded by this much: its
    # edge is the extractor's guess, and the shell it adds or loses (CSF, dura, cortex) shifts every channel's mean
    stripped_statistics_margin_mm: float = 4.5
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
    native: sitk.Image | None = None  # the grid results are written on, when the network's grid is another
    alignment: list[AlignmentRating] = field(default_factory=list)
    skull_stripping: str = ""
    network_space: str = "native"
    scanner_native: bool = False  # inputs on several grids, registered or skull-stripped here: not a BraTS-like set
    thick_slices: tuple[str, ...] = ()  # the inputs acquired with slices more than THICK_SLICE_MM apart
    uncorrected: dict[str, np.ndarray] = field(default_factory=dict)  # before N4, for `Preprocessor.refit_bias`
    statistics: np.ndarray | None = None  # where the z-score statistics come from, when not the whole mask

    @property
    def output_grid(self) -> sitk.Image:
        return self.native if self.native is not None else self.reference


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
        self._brain_extractor = None  # the skull stripper the settings name, loaded for the first case needing it
        self._template: AtlasBrainExtractor | None = None  # the brain template, for skull stripping or the pose
        self._transforms: dict[str, sitk.Transform] = {}
        if settings.skull_strip not in SKULL_STRIP_MODES:
            raise InputError(f"unknown skull stripping '{settings.skull_strip}'; use {', '.join(SKULL_STRIP_MODES)}.")
        self.register_mode = register_mode(settings.register)
        if settings.network_space not in NETWORK_SPACES:
            raise InputError(f"unknown network space '{settings.network_space}'; use {', '.join(NETWORK_SPACES)}.")

    def run(self, images: dict[str, sitk.Image], stage: StageFactory = _no_stage,
            check: Callable[[], None] = lambda: None,
            refits_bias: Callable[[bool], bool] = lambda scanner_native: False) -> PreparedCase:
        """All steps in order; `stage(name)` wraps each step (timing, progress), `check` may cancel.
        `refits_bias(scanner_native)`: whether the model for such a case fits N4 without the tumour
        (`refit_bias`); N4 is then left to that fit, and the channels here, which find the tumour, are not
        corrected."""
        with stage("align to reference"):
            reference, arrays, warnings, transforms, ratings = self.align(images)
        check()
        with stage("brain mask"):
            own_grid = tuple(m for m, image in images.items() if same_grid(image, reference))
            mask, case_to_template, stripping, mask_warnings = self.strip_skull(reference, arrays, own_grid)
            warnings += mask_warnings
            native, space = None, "native"
            template_stripped = case_to_template is not None
            stripped_here = stripping not in (SKULL_KEPT, SKULL_ALREADY_STRIPPED)
            bratslike = not transforms and not stripped_here
            scanner_native = not bratslike or len(own_grid) < len(images)
            wants_atlas = self.settings.network_space == "atlas" or (
                self.settings.network_space == "auto" and not bratslike)
            if wants_atlas and case_to_template is None:
                case_to_template = self.atlas_pose(reference, arrays, warnings)
            if wants_atlas and case_to_template is not None:
                native, space = reference, "atlas pose (rigid, from the brain template's registration)"
                reference = atlas_grid(native, mask, case_to_template)
                arrays = {m: sitk.GetArrayFromImage(resample_to_reference(images[m], reference, transforms.get(m)))
                          for m in arrays}
                head = foreground_mask({m: arrays[m] for m in own_grid})
                if template_stripped:
                    mask = head & self.extractor().mask_on(reference, case_to_template)
                elif stripped_here:  # the learned extractor's brain, carried onto the atlas grid
                    mask = head & _carried_mask(mask, native, reference)
                else:
                    mask = head
            elif sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
                    reference.GetDirection()) != TRAINING_ORIENTATION:
                native, space = reference, f"native, reoriented {TRAINING_ORIENTATION}"
                reference = reoriented(reference)
                arrays = {m: _reoriented_array(a, native) for m, a in arrays.items()}
                mask = _reoriented_array(mask.astype(np.uint8), native) > 0
            box = brain_box(mask, reference.GetSpacing()[::-1], self.settings.crop_margin_mm)
            arrays = {m: a[box] for m, a in arrays.items()}
            mask = mask[box]
        spacing_zyx = tuple(float(s) for s in reference.GetSpacing()[::-1])
        uncorrected = {}
        if self.settings.bias_correction and refits_bias(scanner_native):
            uncorrected = {m: arrays[m] for m in self.correctable(arrays, mask, warnings)}
        elif self.settings.bias_correction:
            with stage("bias correction"):
                corrected = self.correct_bias(arrays, mask, spacing_zyx, warnings, check)
                uncorrected = {m: arrays[m] for m in corrected}
                arrays.update(corrected)
        check()
        with stage("normalization"):
            statistics = self.statistics_region(mask, spacing_zyx) if stripped_here else None
            channels = {m: self.normalize(m, a, mask, statistics) for m, a in arrays.items()}
        thick = tuple(m for m, image in images.items() if max(image.GetSpacing()) > THICK_SLICE_MM)
        return PreparedCase(reference, box, mask, channels, spacing_zyx, warnings, native, ratings, stripping, space,
                            scanner_native, thick, uncorrected, statistics)

    def refit_bias(self, prepared: PreparedCase, tumour: np.ndarray, check: Callable[[], None] = lambda: None
                   ) -> dict[str, np.ndarray]:
        """The channels again, each N4 field fitted on the brain without `tumour` (on the cropped grid) grown by
        N4_TUMOUR_MARGIN_MM, for a model trained so (`ModelCard.n4_without_tumour`): a large tumour is no smooth
        field, and fitted with the brain it pulls the field into the edema."""
        grown = distance_transform_edt(~tumour, sampling=prepared.spacing_zyx) <= N4_TUMOUR_MARGIN_MM \
            if tumour.any() else tumour
        corrected = self.correct_bias(prepared.uncorrected, prepared.mask, prepared.spacing_zyx, [], check,
                                      prepared.mask & ~grown)
        return {**prepared.channels,
                **{m: self.normalize(m, a, prepared.mask, prepared.statistics) for m, a in corrected.items()}}

    def align(self, images: dict[str, sitk.Image]) -> tuple[sitk.Image, dict[str, np.ndarray], list[str],
                                                           dict[str, sitk.Transform], list[AlignmentRating]]:
        """Put every input onto the reference input's grid in physical space, registered where `register` says;
        each registered sequence is checked (`edge_alignment`): a failed one is refused, a doubtful one named."""
        if not images:
            raise InputError("no input volume given: give at least one of T1, T1Gd, T2, FLAIR.")
        unknown = set(images) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modality {sorted(unknown)}; use {', '.join(MODALITIES)}.")
        ref_name = reference_modality(list(images))
        reference = images[ref_name]
        arrays: dict[str, np.ndarray] = {}
        warnings: list[str] = []
        transforms: dict[str, sitk.Transform] = {}
        ratings: list[AlignmentRating] = []
        reference_small = coarse(reference) if self.register_mode != "off" and len(images) > 1 else None
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
            rating = self._alignment(modality, image, reference, ref_name, reference_small)
            if rating is not None:
                ratings.append(rating)
            if rating is not None and rating.registered:
                transforms[modality] = self._transforms.pop(modality)
            elif not same_grid(image, reference):
                warnings.append(f"{DISPLAY_NAMES[modality]} resampled onto the {DISPLAY_NAMES[ref_name]} grid.")
            if rating is not None and rating.rating == "doubtful":
                warnings.append(
                    f"the {DISPLAY_NAMES[modality]} may be misaligned with the {DISPLAY_NAMES[ref_name]} (edge "
                    f"alignment {rating.score:.2f}; aligned sequences score {GOOD_ALIGNMENT} or more): check it in "
                    "the slice views before measuring.")
            aligned = resample_to_reference(image, reference, transforms.get(modality)) \
                if modality in transforms or not same_grid(image, reference) else image
            arrays[modality] = sitk.GetArrayFromImage(aligned).astype(np.float32, copy=False)
        return reference, arrays, warnings, transforms, ratings

    def _alignment(self, modality: str, image: sitk.Image, reference: sitk.Image, ref_name: str,
                   reference_small: sitk.Image) -> AlignmentRating | None:
        """Register when the mode asks for it, check the result; None when nothing was checked (register off).
        `reference_small` is `coarse(reference)`, made once for all sequences."""
        mode = self.register_mode
        if mode == "off":
            return None
        in_place = None
        if mode == "auto":
            in_place = edge_alignment(image, reference, fixed_small=reference_small)
            if same_grid(image, reference) and in_place >= GOOD_ALIGNMENT:
                return rate(modality, False, in_place)
        transform = register_rigid(image, reference, self.settings.registration)
        score = edge_alignment(image, reference, transform, reference_small)
        if in_place is not None and in_place >= max(score, GOOD_ALIGNMENT):
            return rate(modality, False, in_place)  # registering made it no better: keep the scanner's geometry
        if in_place is not None and same_grid(image, reference) and in_place >= FAILED_ALIGNMENT \
                and score < in_place + SAME_GRID_GAIN:
            # One grid, and registering gains little: a co-registered set (BraTS copies gain 0.02-0.05 here,
            # a 4 mm shift far more). Keep it as it is, confirmed by the registration.
            return AlignmentRating(modality, False, round(in_place, 3), "good")
        rating = rate(modality, True, score)
        if rating.rating == "failed":
            raise InputError(
                f"the {DISPLAY_NAMES[modality]} could not be aligned with the {DISPLAY_NAMES[ref_name]} (edge "
                f"alignment {score:.2f}, below {FAILED_ALIGNMENT}): check that it is of the same patient and "
                f"session, or segment without it.")
        self._transforms[modality] = transform
        return rating

    def extractor(self) -> AtlasBrainExtractor:
        """The brain template: it strips the skull (method "template") and gives the atlas pose."""
        if self._template is None:
            self._template = AtlasBrainExtractor(self.settings.brain_extraction)
        return self._template

    @staticmethod
    def _template_like(reference: sitk.Image, arrays: dict[str, np.ndarray]) -> tuple[str, sitk.Image]:
        modality = next(m for m in TEMPLATE_LIKE if m in arrays)
        image = sitk.GetImageFromArray(arrays[modality])
        image.CopyInformation(reference)
        return modality, image

    def atlas_pose(self, reference: sitk.Image, arrays: dict[str, np.ndarray],
                   warnings: list[str]) -> sitk.Transform | None:
        """The brain template registered onto skull-stripped inputs, for their pose only; None (and a warning)
        when it does not fit, and the network then sees the reference grid reoriented."""
        modality, image = self._template_like(reference, arrays)
        try:
            transform = self.extractor().register(image)
            self.extractor().mask_on(image, transform)  # refuses a template that did not land on a brain
        except InputError:
            warnings.append(f"the brain template could not be registered onto the {DISPLAY_NAMES[modality]}, so "
                            "the network saw the images in their own pose, not the atlas pose it was trained "
                            "on; check the result.")
            return None
        return transform

    def brain_mask(self, reference: sitk.Image, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """The foreground voxels; within them the registered brain template when the skull is to be stripped."""
        mask, _, _, warnings = self.strip_skull(reference, arrays)
        return mask, warnings

    def strip_skull(self, reference: sitk.Image, arrays: dict[str, np.ndarray], mask_from: tuple[str, ...] = ()
                    ) -> tuple[np.ndarray, sitk.Transform | None, str, list[str]]:
        """The foreground voxels of the `mask_from` arrays (default all); within them the registered brain template
        when the skull is to be stripped. Also the template registration (case points to template points, None
        when not run) and what was done. `run` takes the foreground from the sequences on the reference's own
        grid: one resampled from thick slices spreads half a slice past the brain's edge, and counting that shell
        as brain shifts every channel's z-score (docs/clinical-benchmark.md)."""
        mask = foreground_mask({m: arrays[m] for m in mask_from} if mask_from else arrays)
        stripped = looks_skull_stripped(mask)
        mode = self.settings.skull_strip
        if mode == "off" or (mode == "auto" and stripped):
            how = SKULL_ALREADY_STRIPPED if stripped else SKULL_KEPT
            return mask, None, how, [] if stripped else [NOT_SKULL_STRIPPED]
        modality, image = self._template_like(reference, arrays)
        method = self.settings.brain_extraction.method
        transform = None
        if method == "template":
            transform = self.extractor().register(image)
            mask &= self.extractor().mask_on(image, transform)
        else:
            if self._brain_extractor is None:
                self._brain_extractor = brain_extractor(self.settings.brain_extraction)
            mask &= self._brain_extractor.mask(image)
        how = f"{method_description(method)} on the {DISPLAY_NAMES[modality]}"
        if mode == "on":
            return mask, transform, how, []
        return mask, transform, how, [
            f"the inputs were not skull-stripped: the skull was stripped by {method_description(method)} on the "
            f"{DISPLAY_NAMES[modality]}; check the result near the brain's edge."]

    def correct_bias(self, arrays: dict[str, np.ndarray], mask: np.ndarray, spacing_zyx: tuple[float, ...],
                     warnings: list[str], check: Callable[[], None], fit_mask: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
        """N4 on every channel that allows it, `bias.workers` channels at a time (ITK releases the GIL); the
        fields are fitted on `fit_mask` (default: the mask) and applied on the mask."""
        todo = self.correctable(arrays, mask, warnings)

        def correct(modality: str) -> np.ndarray:
            check()
            return self.bias_corrector.correct(arrays[modality], mask, spacing_zyx[::-1], fit_mask)

        if len(todo) <= 1 or self.settings.bias.workers <= 1:
            return {m: correct(m) for m in todo}
        with ThreadPoolExecutor(min(len(todo), self.settings.bias.workers)) as pool:
            futures = {m: pool.submit(correct, m) for m in todo}
            try:
                return {m: future.result() for m, future in futures.items()}
            finally:
                for future in futures.values():
                    future.cancel()

    def correctable(self, arrays: dict[str, np.ndarray], mask: np.ndarray, warnings: list[str]) -> list[str]:
        """The channels N4 can correct; a warning for each other one."""
        todo = []
        for modality, array in arrays.items():
            reason = self.bias_corrector.skip_reason(array, mask)
            if reason:
                warnings.append(f"{DISPLAY_NAMES[modality]} {reason}.")
            else:
                todo.append(modality)
        return todo

    def statistics_region(self, mask: np.ndarray, spacing_zyx: tuple[float, ...]) -> np.ndarray | None:
        """Where the z-score statistics of a mask made here come from: its voxels more than
        `stripped_statistics_margin_mm` inside; None (the whole mask) for Nyúl, no margin, or an interior under
        a tenth of the mask, too thin a brain to leave its edge out."""
        margin = self.settings.stripped_statistics_margin_mm
        if self.normalization.method != "zscore" or margin <= 0:
            return None
        interior = distance_transform_edt(mask, sampling=spacing_zyx) > margin
        return interior if np.count_nonzero(interior) >= 0.1 * np.count_nonzero(mask) else None

    def normalize(self, modality: str, image: np.ndarray, mask: np.ndarray,
                  statistics: np.ndarray | None = None) -> np.ndarray:
        """Normalize one channel as the model card says; z-score statistics inside `statistics` (default: mask)."""
        if self.normalization.method == "zscore":
            return zscore(image, mask, statistics)
        if self.normalization.method == "nyul":
            return NyulStandardizer(self.normalization.landmarks[modality]).apply(image, mask)
        raise InputError(f"unknown normalization '{self.normalization.method}' in the model card.")


def register_mode(value: str | bool) -> str:
    """The registration mode; True and False (the former switch) mean "on" and "off"."""
    mode = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    if mode not in REGISTER_MODES:
        raise InputError(f"unknown registration mode '{value}'; use {', '.join(REGISTER_MODES)}.")
    return mode


def _reoriented_array(array: np.ndarray, grid: sitk.Image) -> np.ndarray:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(reoriented(image))


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


def _carried_mask(mask: np.ndarray, grid: sitk.Image, onto: sitk.Image) -> np.ndarray:
    """A (z, y, x) mask on `grid` resampled (nearest neighbour) onto another grid in physical space."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(sitk.Resample(image, onto, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
