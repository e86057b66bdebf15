"""Skull stripping for inputs that still show the head: a brain template registered onto the case, or deepbet."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .registration import mutual_information_registration
from .resources import BRAIN_TEMPLATE
from .settings import BRAIN_EXTRACTION_METHODS

# Brain volumes outside this range (mL) mean the template did not land on the brain.
PLAUSIBLE_BRAIN_ML = (600.0, 2600.0)


@dataclass(frozen=True)
class BrainExtractionSettings:
    """`method` (deepbet or template) and its parameters: for the template, the affine registration (Mattes
    mutual information) of the T1 brain template onto one input; for deepbet, its grid and threshold."""

    method: str = BRAIN_EXTRACTION_METHODS[0]
    working_spacing_mm: float = 2.0
    histogram_bins: int = 32
    sampling_fraction: float = 0.2
    iterations: int = 200
    margin_mm: float = 2.0
    seed: int = 7
    deepbet_spacing_mm: float = 1.0
    deepbet_threshold: float = 0.5
    deepbet_margin_mm: float = 2.0


class AtlasBrainExtractor:
    """The brain of a case that was not skull-stripped: the MNI ICBM152 2009a brain, moved onto the case.

    A similarity then an affine registration of the template's T1 brain onto the case (mutual
    information, measured only where the template has brain, so the skull and scalp do not pull it);
    the template's brain, grown by `margin_mm`, is the mask.
    """

    def __init__(self, settings: BrainExtractionSettings = BrainExtractionSettings(),
                 template_path=BRAIN_TEMPLATE):
        self.settings = settings
        if not template_path.is_file():
            raise InputError(f"the brain template for skull stripping is missing ({template_path}); "
                             "reinstall BrainTumorSeg, or give skull-stripped inputs with skull stripping off.")
        self.template = sitk.Cast(sitk.ReadImage(str(template_path)), sitk.sitkFloat32)
        self.template_brain = sitk.BinaryFillhole(sitk.BinaryMorphologicalClosing(self.template > 0, [2] * 3))
        # Where the metric is sampled, and each template voxel's distance (mm) outside its brain.
        self.sampled = sitk.BinaryDilate(self.template_brain, [3] * 3)
        self.distance = sitk.SignedMaurerDistanceMap(self.template_brain, insideIsPositive=False,
                                                     squaredDistance=False, useImageSpacing=True)

    def mask(self, image: sitk.Image) -> np.ndarray:
        """The brain as a boolean (z, y, x) array on the image's grid."""
        return self.mask_on(image, self.register(image))

    def mask_on(self, grid: sitk.Image, transform: sitk.Transform) -> np.ndarray:
        """The template's brain moved by `transform` (grid points to template points) onto a grid, checked."""
        moved = sitk.Resample(self.distance, grid, transform, sitk.sitkLinear, 1e6, sitk.sitkFloat32)
        return plausible_brain(sitk.GetArrayFromImage(moved) <= self.settings.margin_mm, grid,
                               "the brain template landed on")

    def register(self, image: sitk.Image) -> sitk.Transform:
        """The affine transform that maps the case's physical points onto the template."""
        case = isotropic(image, self.settings.working_spacing_mm)
        head = sitk.Cast(sitk.OtsuThreshold(case, 0, 1), sitk.sitkFloat32)
        start = sitk.Similarity3DTransform(sitk.CenteredTransformInitializer(
            head, sitk.Cast(self.template_brain, sitk.sitkFloat32), sitk.Similarity3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS))
        try:
            self._optimize(case, start, smoothing_mm=(4.0, 2.0))
            affine = sitk.AffineTransform(3)
            affine.SetCenter(start.GetCenter())
            affine.SetMatrix(start.GetMatrix())
            affine.SetTranslation(start.GetTranslation())
            self._optimize(case, affine, smoothing_mm=(2.0, 1.0))
        except RuntimeError as error:
            raise InputError(f"skull stripping failed ({error}). Strip the skull with another tool "
                             "(e.g. HD-BET) and run with skull stripping off.") from None
        return affine

    def _optimize(self, case: sitk.Image, transform: sitk.Transform, smoothing_mm: tuple[float, float]) -> None:
        settings = self.settings
        method = mutual_information_registration(settings.histogram_bins, settings.sampling_fraction, settings.seed,
                                                 settings.iterations, (2, 1), smoothing_mm, gradient_tolerance=1e-7)
        method.SetMetricMovingMask(self.sampled)
        method.SetInitialTransform(transform, inPlace=True)
        method.Execute(case, self.template)


class DeepbetBrainExtractor:
    """The brain found by deepbet (Fisch et al. 2024; MIT; a U-Net for T1-weighted brain extraction whose
    TorchScript weights ship inside its wheel, so nothing is downloaded).

    The image is put in the RAS orientation deepbet was trained in and on `deepbet_spacing_mm` cubic voxels
    (it rescales its brain box to 256 voxels a side, so thick slices must be made isotropic first). Its brain
    (probability above `deepbet_threshold`; the largest connected part, holes filled), grown there by
    `deepbet_margin_mm` so that a tumour at the brain's edge is kept, and brought back onto the image's grid,
    is the mask.
    """

    def __init__(self, settings: BrainExtractionSettings = BrainExtractionSettings()):
        self.settings = settings
        try:
            from deepbet import BrainExtraction
        except ImportError:
            raise InputError("brain extraction 'deepbet' needs the deepbet package, which is not installed: "
                             "reinstall BrainTumorSeg (pip install braintumorseg), or use "
                             "--brain-extraction template.") from None
        import torch
        self.network = BrainExtraction(no_gpu=not torch.cuda.is_available())

    def mask(self, image: sitk.Image) -> np.ndarray:
        """The brain as a boolean (z, y, x) array on the image's grid."""
        settings = self.settings
        ras = isotropic(sitk.DICOMOrient(image, "RAS"), settings.deepbet_spacing_mm)
        volume = sitk.GetArrayFromImage(ras).transpose(2, 1, 0).copy()  # deepbet's (x, y, z) RAS voxel order
        try:
            probability = self.network.run_model(volume)
        except (AssertionError, RuntimeError) as error:
            raise InputError(f"skull stripping failed (deepbet: {error or 'no brain found'}). Try "
                             "--brain-extraction template, or strip the skull with another tool and run with "
                             "skull stripping off.") from None
        found = sitk.GetImageFromArray((probability > settings.deepbet_threshold).transpose(2, 1, 0).astype(np.uint8))
        found.CopyInformation(ras)
        brain = sitk.BinaryFillhole(largest_component(found))
        outside_mm = sitk.SignedMaurerDistanceMap(brain, insideIsPositive=False, squaredDistance=False,
                                                  useImageSpacing=True)
        outside_mm = sitk.Resample(outside_mm, image, sitk.Transform(), sitk.sitkLinear, 1e6)
        return plausible_brain(sitk.GetArrayFromImage(outside_mm) <= settings.deepbet_margin_mm, image,
                               "deepbet found")


def brain_extractor(settings: BrainExtractionSettings = BrainExtractionSettings()):
    """The extractor the settings name (an object with `mask(image) -> (z, y, x) bool array`)."""
    if settings.method == "template":
        return AtlasBrainExtractor(settings)
    if settings.method == "deepbet":
        return DeepbetBrainExtractor(settings)
    raise InputError(f"unknown brain extraction '{settings.method}'; use {', '.join(BRAIN_EXTRACTION_METHODS)}.")


def method_description(method: str) -> str:
    """How a method finds the brain, in words for the run's warnings and report."""
    return {"template": "registering a brain template (MNI ICBM152)",
            "deepbet": "deepbet (a brain extraction network)"}[method]


def plausible_brain(brain: np.ndarray, image: sitk.Image, what: str) -> np.ndarray:
    """The mask, or a clear error when its volume cannot be a brain."""
    volume_ml = brain.sum() * float(np.prod(image.GetSpacing())) / 1000.0
    low, high = PLAUSIBLE_BRAIN_ML
    if not low <= volume_ml <= high:
        raise InputError(f"skull stripping failed: {what} {volume_ml:.0f} mL, not a brain. Try the other "
                         f"--brain-extraction ({', '.join(BRAIN_EXTRACTION_METHODS)}), or strip the skull with "
                         "another tool (e.g. HD-BET) and run with skull stripping off.")
    return brain


def largest_component(mask: sitk.Image) -> sitk.Image:
    """The largest connected part of a binary image."""
    parts = sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True)
    return parts == 1


def isotropic(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """The image resampled to cubic voxels over the same extent (for registration)."""
    size = [max(2, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)
