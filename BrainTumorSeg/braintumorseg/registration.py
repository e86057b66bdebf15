"""Rigid registration of one sequence onto another (mutual information), and the registration method the brain
template uses too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputError


@dataclass(frozen=True)
class RegistrationSettings:
    """Rigid registration onto the reference (Mattes mutual information) on the images' own grids. Onto a reference
    with slices thicker than twice `working_spacing_mm` (a 2D T1Gd) both images are first resampled to cubic voxels
    of that size (`coarse`) and registered with `working_shrink_factors` (docs/native-exams.md). None: own grids."""

    histogram_bins: int = 32
    sampling_fraction: float = 0.05
    iterations: int = 100
    shrink_factors: tuple[int, ...] = (4, 2)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0)
    seed: int = 7
    working_spacing_mm: float | None = 2.0
    working_shrink_factors: tuple[int, ...] = (2, 1)


def mutual_information_registration(histogram_bins: int, sampling_fraction: float, seed: int, iterations: int,
                                    shrink_factors: Sequence[int], smoothing_sigmas_mm: Sequence[float],
                                    gradient_tolerance: float = 1e-6) -> sitk.ImageRegistrationMethod:
    """A multi-resolution registration: Mattes mutual information on random samples, regular-step gradient
    descent scaled by physical shift, smoothing given in mm. The caller sets the transform (and any masks)."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling_fraction, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, gradientMagnitudeTolerance=gradient_tolerance)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def register_rigid(moving: sitk.Image, fixed: sitk.Image,
                   settings: RegistrationSettings = RegistrationSettings()) -> sitk.Transform:
    """Find the rigid transform that maps fixed physical points onto the moving image."""
    shrink = settings.shrink_factors
    if settings.working_spacing_mm and max(fixed.GetSpacing()) > 2 * settings.working_spacing_mm:
        moving, fixed = coarse(moving, settings.working_spacing_mm), coarse(fixed, settings.working_spacing_mm)
        shrink = settings.working_shrink_factors
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    method = mutual_information_registration(settings.histogram_bins, settings.sampling_fraction, settings.seed,
                                             settings.iterations, shrink, settings.smoothing_sigmas)
    method.SetInitialTransform(initial, inPlace=False)
    try:
        return method.Execute(fixed, moving)
    except RuntimeError as error:
        raise InputError(f"rigid registration failed ({error}); run with --register off "
                         "if the inputs are already aligned.") from None


# Edge alignment (see `edge_alignment`) of a sequence on the reference: BraTS copies and registered raw series score
# 0.78-0.83, 3 mm / 3 degrees off 0.67-0.73, 5 mm / 6 degrees off 0.61-0.69, 12 mm or 20 degrees off 0.41-0.61.
# 0.75: the raw exam's T1, 6 degrees off its T1Gd on the same grid, scores 0.72 in place and 0.83 registered.
GOOD_ALIGNMENT, FAILED_ALIGNMENT = 0.75, 0.62
# A sequence on the reference's grid is kept as it is unless registering raises its edge alignment by this much
# (co-registered BraTS T2/FLAIR on their T1Gd: 0.68-0.71 in place, +0.02 to +0.05 registered).
SAME_GRID_GAIN = 0.06
CHECK_SPACING_MM = 3.0


@dataclass(frozen=True)
class AlignmentRating:
    """How well one sequence sits on the reference after alignment: its edge alignment and a rating."""

    modality: str
    registered: bool
    score: float
    rating: str  # "good", "doubtful" or "failed"


def rate(modality: str, registered: bool, score: float) -> AlignmentRating:
    rating = "good" if score >= GOOD_ALIGNMENT else "doubtful" if score >= FAILED_ALIGNMENT else "failed"
    return AlignmentRating(modality, registered, round(score, 3), rating)


def coarse(image: sitk.Image, spacing_mm: float = CHECK_SPACING_MM) -> sitk.Image:
    """The image smoothed (Gaussian, half the new spacing) and resampled to cubic voxels of `spacing_mm` over the
    same extent; the thresholds above were measured on these."""
    size = [max(4, int(round(n * s / spacing_mm))) for n, s in zip(image.GetSize(), image.GetSpacing())]
    smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), spacing_mm / 2)
    return sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), [spacing_mm] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def edge_alignment(moving: sitk.Image, fixed: sitk.Image, transform: sitk.Transform | None = None,
                   fixed_small: sitk.Image | None = None) -> float:
    """How well the edges of two images of one head coincide, whatever their contrasts: the mean squared cosine
    of the angle between their intensity gradients at 3 mm, weighted by the gradients' magnitudes, where both
    were imaged (1 when every edge is parallel, about 0.4 for images of one head 25 mm apart). `fixed_small`:
    `coarse(fixed)` when the caller checks several images against one."""
    transform = transform or sitk.Transform()
    if fixed_small is None:
        fixed_small = coarse(fixed)
    moved = sitk.Resample(sitk.Cast(moving, sitk.sitkFloat32), fixed_small, transform, sitk.sitkLinear, 0.0)
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    imaged = sitk.BinaryErode(sitk.Resample(ones, fixed_small, transform, sitk.sitkNearestNeighbor, 0), [2] * 3)
    inside = sitk.GetArrayViewFromImage(imaged) > 0
    if inside.sum() < 100:
        return 0.0
    a = np.stack(np.gradient(sitk.GetArrayFromImage(fixed_small)))[:, inside]
    b = np.stack(np.gradient(sitk.GetArrayFromImage(moved)))[:, inside]
    norm_a, norm_b = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    weight = norm_a * norm_b
    if weight.sum() == 0:
        return 0.0
    cos2 = (a * b).sum(0) ** 2 / np.maximum(weight ** 2, 1e-12)
    return float((cos2 * weight).sum() / weight.sum())
