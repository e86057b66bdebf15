"""Skull stripping for inputs that still show the head: a brain template registered onto the case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .registration import mutual_information_registration
from .resources import BRAIN_TEMPLATE

# Brain volumes outside this range (mL) mean the template did not land on the brain.
PLAUSIBLE_BRAIN_ML = (600.0, 2600.0)


@dataclass(frozen=True)
class BrainExtractionSettings:
    """Affine registration (Mattes mutual information) of the T1 brain template onto one input."""

    working_spacing_mm: float = 2.0
    histogram_bins: int = 32
    sampling_fraction: float = 0.2
    iterations: int = 200
    margin_mm: float = 2.0
    seed: int = 7


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
        brain = sitk.GetArrayFromImage(moved) <= self.settings.margin_mm
        volume_ml = brain.sum() * float(np.prod(grid.GetSpacing())) / 1000.0
        low, high = PLAUSIBLE_BRAIN_ML
        if not low <= volume_ml <= high:
            raise InputError(f"skull stripping failed: the brain template landed on {volume_ml:.0f} mL, not a "
                             "brain. Strip the skull with another tool (e.g. HD-BET) and run with skull "
                             "stripping off.")
        return brain

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


def isotropic(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """The image resampled to cubic voxels over the same extent (for registration)."""
    size = [max(2, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)
