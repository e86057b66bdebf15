"""Dice and 95th-percentile Hausdorff distance of the BraTS regions (WT, TC, ET), with BraTS rules.

Empty regions follow the BraTS evaluation: when both prediction and reference are empty the region
scores Dice 1 and HD95 0; when exactly one is empty it scores Dice 0 and HD95 `MAX_HD95_MM`, the
diagonal of the 240×240×155 mm BraTS volume (373.13 mm).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .boxes import bounding_box
from .errors import InputError
from .images import check_file, same_grid
from .labels import REGION_CLASSES, REGIONS, to_internal

MAX_HD95_MM = round(float(np.sqrt(240.0 ** 2 + 240.0 ** 2 + 155.0 ** 2)), 2)


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice overlap of two binary masks; 1 when both are empty."""
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(reference))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a 6-neighbour outside the mask (voxels on the array border count as surface)."""
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1))


def _surface_distances(source: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance in mm from each surface voxel of `source` to the nearest surface voxel of `target`."""
    to_target = ndimage.distance_transform_edt(~_surface(target), sampling=spacing)
    return to_target[_surface(source)]


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm between the surfaces of two masks.

    As the BraTS 2023 evaluation (panoptica): the 95th percentile of the distances of both directions
    pooled (prediction surface to reference surface and back), but in mm with the voxel spacing where
    BraTS measures in voxels (the same on their 1 mm grid). Empty masks follow the BraTS rules above.
    """
    prediction, reference = prediction.astype(bool), reference.astype(bool)
    has_prediction, has_reference = bool(prediction.any()), bool(reference.any())
    if not has_prediction and not has_reference:
        return 0.0
    if not has_prediction or not has_reference:
        return MAX_HD95_MM
    box = bounding_box(prediction | reference, 1)  # one voxel more: surfaces are found as on the full array
    prediction, reference = prediction[box], reference[box]
    spacing = [float(s) for s in spacing_zyx]
    distances = np.concatenate([_surface_distances(prediction, reference, spacing),
                                _surface_distances(reference, prediction, spacing)])
    return float(np.percentile(distances, 95))


def region_scores(prediction: np.ndarray, reference: np.ndarray,
                  spacing_zyx: Sequence[float]) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) of WT, TC and ET for two arrays of internal classes (0 bg, 1 NCR, 2 ED, 3 ET)."""
    if prediction.shape != reference.shape:
        raise InputError(f"prediction and reference have different sizes ({prediction.shape} and "
                         f"{reference.shape}); they must be on the same grid.")
    scores = {}
    for region in REGIONS:
        pred = np.isin(prediction, REGION_CLASSES[region])
        ref = np.isin(reference, REGION_CLASSES[region])
        scores[region] = {"dice": round(dice(pred, ref), 6), "hd95": round(hd95(pred, ref, spacing_zyx), 4)}
    return scores


def read_label_map(path: str | os.PathLike, convention: str, what: str) -> tuple[np.ndarray, sitk.Image]:
    """Read a label file and convert it from `convention` to internal classes."""
    path = str(check_file(path, what, "a label map file"))
    try:
        image = sitk.ReadImage(path)
    except RuntimeError:
        raise InputError(f"{what}: cannot read {path}: it is not an image file or it is corrupt.") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what}: {path} is not a 3D label map.")
    array = sitk.GetArrayFromImage(image)
    if not np.all(np.isfinite(array)) or not np.all(np.mod(array, 1) == 0):
        raise InputError(f"{what}: {path} holds non-integer values; give a label map, not an image.")
    try:
        return to_internal(array.astype(np.int64), convention), image
    except InputError as error:
        raise InputError(f"{what}: {error}") from None


def evaluate_files(prediction: str | os.PathLike, reference: str | os.PathLike,
                   prediction_convention: str = "brats2021",
                   reference_convention: str = "brats2021") -> dict[str, dict[str, float]]:
    """Region Dice and HD95 of a predicted label file against a reference label file."""
    predicted, predicted_image = read_label_map(prediction, prediction_convention, "prediction")
    expected, expected_image = read_label_map(reference, reference_convention, "reference")
    if not same_grid(predicted_image, expected_image, tolerance=1e-3):
        raise InputError(f"prediction {prediction} and reference {reference} are not on the same grid "
                         "(size, spacing, origin or direction differ); resample one onto the other first.")
    return region_scores(predicted, expected, expected_image.GetSpacing()[::-1])
