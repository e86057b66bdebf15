"""The grid the network sees: BraTS copies are axial, stored LPS and in the atlas pose, so a case is shown to the
network the same way (reoriented, or turned into the atlas pose) and its results are carried back onto its own grid.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


TRAINING_ORIENTATION = "LPS"  # how BraTS copies store their axes (SimpleITK's DICOMOrient code)
ATLAS_SPACING_MM = 1.0
ATLAS_MARGIN_MM = 12.0


def reoriented(image: sitk.Image) -> sitk.Image:
    """The same voxels with their axes permuted and flipped into the training orientation (no resampling)."""
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == TRAINING_ORIENTATION:
        return image
    return sitk.DICOMOrient(image, TRAINING_ORIENTATION)


def rotation_of(case_to_template: sitk.Transform) -> np.ndarray:
    """The rotation nearest to the linear part of an affine (case points to template points), inverted: its
    columns are the template's axes in the case's physical space."""
    matrix = np.array(case_to_template.GetMatrix(), float).reshape(3, 3)
    u, _, vt = np.linalg.svd(np.linalg.inv(matrix))
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        u[:, -1] *= -1
        rotation = u @ vt
    return rotation


def atlas_grid(reference: sitk.Image, brain: np.ndarray, case_to_template: sitk.Transform,
               spacing_mm: float = ATLAS_SPACING_MM, margin_mm: float = ATLAS_MARGIN_MM) -> sitk.Image:
    """A grid in the atlas pose (axes along the template's L, P, S, cubic voxels) that covers the brain mask
    (a (z, y, x) array on `reference`) with a margin; a rigid pose: the case keeps its size."""
    rotation = rotation_of(case_to_template)
    index = np.argwhere(brain[::2, ::2, ::2])[:, ::-1] * 2.0  # (x, y, z) voxel indices, every other voxel
    matrix = np.array(reference.GetDirection()).reshape(3, 3) * np.array(reference.GetSpacing())
    points = np.array(reference.GetOrigin()) + index @ matrix.T
    local = points @ rotation  # coordinates along the atlas axes
    low, high = local.min(0) - margin_mm, local.max(0) + margin_mm
    grid = sitk.Image([int(np.ceil(n)) + 1 for n in (high - low) / spacing_mm], sitk.sitkFloat32)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(rotation.ravel().tolist())
    grid.SetOrigin((rotation @ low).tolist())
    return grid


def carried_back(values: np.ndarray, grid: sitk.Image, target: sitk.Image) -> np.ndarray:
    """(channels, z, y, x) values on `grid` resampled (linearly, 0 outside) onto the target grid."""
    out = []
    for channel in values:
        image = sitk.GetImageFromArray(np.ascontiguousarray(channel, np.float32))
        image.CopyInformation(grid)
        out.append(sitk.GetArrayFromImage(sitk.Resample(image, target, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                        sitk.sitkFloat32)))
    return np.stack(out)
