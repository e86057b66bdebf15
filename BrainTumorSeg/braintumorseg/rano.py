"""Bidimensional measurements of the enhancing lesions of one exam, by the RANO criteria (RANO 2.0 by default).

A lesion is a 26-connected component of tumour core (enhancing + necrotic/non-enhancing core) that holds
enhancing voxels: fragments of one enhancing rim around a necrotic centre are one lesion. It is measured on its
enhancing voxels only, in the plane of the reference grid's slices (see `measurement_grid`). In a slice the
lesion is the union of its pixels as rectangles (physical spacing); the longest diameter is the longest segment
between two points of that region (the diameter of the convex hull of the pixel corners, exact), the
perpendicular diameter the longest extent of the lesion along a line perpendicular to it (from the first to the
last enhancing pixel the line crosses, so an enclosed necrotic centre is spanned, never counted as enhancing
volume; exact, see `perpendicular_diameter`). The slice measured is the one whose product is largest. Both ends
of each diameter are given in physical (ITK LPS) coordinates.

Imaging measurements only: the criteria's clinical parts are the reader's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist, squareform

from .labels import ED, ET, NCR
from .rano_results import CONNECTIVITY, RANO_2_0, Diameter, Lesion, RanoCriteria, RanoMeasurement

ISOTROPIC_RATIO = 1.5  # a grid whose largest spacing is at most this times the smallest counts as a 3D acquisition
PLANES = ("sagittal", "coronal", "axial")  # by the physical axis (LPS x, y, z) closest to the slice normal
NECROTIC_SHARE = 0.25  # flag a lesion when this share of its measured slice's core is non-enhancing


@dataclass(frozen=True)
class SliceDiameters:
    """The two diameters of one slice's lesion, as end points in in-plane mm (x along i, y along j)."""

    longest: tuple[np.ndarray, np.ndarray]
    perpendicular: tuple[np.ndarray, np.ndarray]

    @property
    def longest_mm(self) -> float:
        return float(np.linalg.norm(self.longest[1] - self.longest[0]))

    @property
    def perpendicular_mm(self) -> float:
        return float(np.linalg.norm(self.perpendicular[1] - self.perpendicular[0]))

    @property
    def product(self) -> float:
        return self.longest_mm * self.perpendicular_mm


def boundary_pixels(mask: np.ndarray) -> np.ndarray:
    """(row j, column i) of the pixels with a 4-neighbour outside the mask."""
    inner = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(2, 1), border_value=0)
    return np.argwhere(mask & ~inner)


def pixel_corners(pixels: np.ndarray, spacing_ij: tuple[float, float]) -> np.ndarray:
    """The unique corners, in mm (x = i·sx, y = j·sy), of the pixels given as (j, i)."""
    offsets = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    ij = (pixels[:, None, ::-1] + offsets[None]).reshape(-1, 2)
    return np.unique(ij * np.asarray(spacing_ij), axis=0)


def longest_diameter(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The farthest pair of points of the region (they are vertices of the convex hull of its corners)."""
    hull = corners[ConvexHull(corners).vertices]
    distances = squareform(pdist(hull))
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return hull[first], hull[second]


def perpendicular_diameter(pixels: np.ndarray, corners: np.ndarray, spacing_ij: tuple[float, float],
                           direction: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The longest extent of the pixel region along a line perpendicular to `direction`.

    Along a line {t·u + s·v}, the region's extent is max s − min s over the pixel rectangles the line crosses
    (each one clipped exactly). That extent is piecewise linear in t with breaks where the line passes a
    corner, so its maximum is at one of the corners' offsets t = u·corner: all of them are tried.
    """
    u = direction / np.linalg.norm(direction)
    v = np.array([-u[1], u[0]])
    half = 0.5 * np.asarray(spacing_ij)
    centres = pixels[:, ::-1] * np.asarray(spacing_ij)
    low, high = centres - half, centres + half  # (N, 2) rectangles
    offsets = np.unique(np.round(corners @ u, 9))
    best = (-1.0, 0.0, 0.0, 0.0)
    tolerance = 1e-9 * max(1.0, float(np.abs(corners).max()))
    for begin in range(0, len(offsets), block):
        t = offsets[begin:begin + block, None, None]  # (T, 1, 1)
        s_low = np.full((t.shape[0], len(pixels)), -np.inf)
        s_high = np.full((t.shape[0], len(pixels)), np.inf)
        for axis in range(2):  # clip the line to the slab low ≤ t·u + s·v ≤ high on each axis
            base = t[..., 0] * u[axis]
            if abs(v[axis]) < 1e-12:
                outside = (base < low[None, :, axis] - tolerance) | (base > high[None, :, axis] + tolerance)
                s_low[outside], s_high[outside] = np.inf, -np.inf
                continue
            a = (low[None, :, axis] - base) / v[axis]
            b = (high[None, :, axis] - base) / v[axis]
            s_low = np.maximum(s_low, np.minimum(a, b))
            s_high = np.minimum(s_high, np.maximum(a, b))
        crossed = s_low <= s_high + tolerance
        first = np.where(crossed, s_low, np.inf).min(axis=1)
        last = np.where(crossed, s_high, -np.inf).max(axis=1)
        extent = last - first
        index = int(np.argmax(extent))
        if extent[index] > best[0]:
            best = (float(extent[index]), float(t[index, 0, 0]), float(first[index]), float(last[index]))
    _, offset, first, last = best
    return offset * u + first * v, offset * u + last * v


def plane_of(image: sitk.Image) -> str:
    """The anatomical plane closest to the image's slices (those of constant third index)."""
    normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
    return PLANES[int(np.argmax(np.abs(normal)))]


def measurement_grid(labels: sitk.Image) -> tuple[sitk.Image, str]:
    """The label map on the grid whose slices are measured, and a sentence saying which plane and why.

    The slices are the T1Gd's own (its acquisition plane). When that plane is not axial and the voxels are near
    isotropic (a 3D acquisition, read on axial reformats), the voxel axes are reordered so that the slices are
    the ones closest to axial: `sitk.DICOMOrient`, a permutation and flip of the axes, no interpolation. A thick-
    slice acquisition in another plane is measured in its own plane, as it was acquired.
    """
    plane = plane_of(labels)
    if plane == "axial":
        return labels, "axial: the slices of the T1Gd as acquired."
    spacing = labels.GetSpacing()
    if max(spacing) <= ISOTROPIC_RATIO * min(spacing):
        oriented = sitk.DICOMOrient(labels, "LPS")
        return oriented, (f"axial: the T1Gd is a near-isotropic {plane} acquisition, so its voxel axes were "
                          f"reordered (no interpolation) to measure on the slices closest to axial "
                          f"({plane_of(oriented)}).")
    return labels, (f"{plane}: the T1Gd was acquired in {plane} slices of {spacing[2]:.1f} mm; the lesions are "
                    f"measured in that plane, as acquired (reformatting thick slices to axial would blur them).")


def physical_point(image: sitk.Image, xy_mm: np.ndarray, spacing_ij: tuple[float, float], k: int) -> tuple:
    index = (float(xy_mm[0] / spacing_ij[0]), float(xy_mm[1] / spacing_ij[1]), float(k))
    return tuple(round(c, 3) for c in image.TransformContinuousIndexToPhysicalPoint(index))


def best_slice(enhancing: np.ndarray, spacing_ij: tuple[float, float]) -> tuple[int, SliceDiameters]:
    """The slice (first array axis) with the largest product of diameters (then the longest diameter, then the
    first). The perpendicular diameter is at most the longest, so a slice whose longest diameter squared is below
    the best product so far cannot win and is not searched further."""
    longest = []
    for k in np.flatnonzero(enhancing.any(axis=(1, 2))):
        pixels = boundary_pixels(enhancing[k])
        corners = pixel_corners(pixels, spacing_ij)
        start, end = longest_diameter(corners)
        longest.append((float(np.linalg.norm(end - start)), int(k), pixels, corners, (start, end)))
    best = None
    for length, k, pixels, corners, ends in sorted(longest, key=lambda item: (-item[0], item[1])):
        if best is not None and length * length < best[0][0]:
            break
        measured = SliceDiameters(ends, perpendicular_diameter(pixels, corners, spacing_ij, ends[1] - ends[0]))
        key = (round(measured.product, 6), round(measured.longest_mm, 6), -k)
        if best is None or key > best[0]:
            best = (key, k, measured)
    return best[1], best[2]


def measure_lesions(classes: np.ndarray, reference: sitk.Image,
                    criteria: RanoCriteria = RANO_2_0) -> RanoMeasurement:
    """Measure the enhancing lesions of internal classes (z, y, x) on the reference grid."""
    return measure_with_map(classes, reference, criteria)[0]


def measure_with_map(classes: np.ndarray, reference: sitk.Image,
                     criteria: RanoCriteria = RANO_2_0) -> tuple[RanoMeasurement, sitk.Image]:
    """The measurements and the lesion map: each lesion's core voxels hold its id, on the measurement grid."""
    start = time.perf_counter()
    labels = sitk.GetImageFromArray(classes.astype(np.uint8))
    labels.CopyInformation(reference)
    grid, note = measurement_grid(labels)
    array = sitk.GetArrayViewFromImage(grid)
    spacing = grid.GetSpacing()
    spacing_ij, thickness = (spacing[0], spacing[1]), spacing[2]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    minimum = criteria.minimum_diameter(thickness)
    result = RanoMeasurement(criteria=criteria.name, plane=note.split(":")[0], plane_note=note,
                             slice_thickness_mm=round(thickness, 3), min_diameter_mm=round(minimum, 3),
                             connectivity=CONNECTIVITY)
    counts = {c: int(np.count_nonzero(array == c)) for c in (NCR, ED, ET)}
    result.enhancing_ml = round(counts[ET] * voxel_ml, 3)
    result.necrotic_core_ml = round(counts[NCR] * voxel_ml, 3)
    result.edema_ml = round(counts[ED] * voxel_ml, 3)
    result.non_enhancing_ml = round((counts[NCR] + counts[ED]) * voxel_ml, 3)
    lesion_ids = np.zeros(array.shape, np.uint16)
    if counts[ET]:
        tumour_core = (array == NCR) | (array == ET)
        around = tuple(slice(int(axis.min()), int(axis.max()) + 1) for axis in np.nonzero(tumour_core))
        components, _ = ndimage.label(tumour_core[around], np.ones((3, 3, 3), bool))
        found = []
        for number, inner in enumerate(ndimage.find_objects(components), start=1):
            box = tuple(slice(o.start + i.start, o.start + i.stop) for o, i in zip(around, inner))
            core = components[inner] == number
            enhancing = core & (array[box] == ET)
            if enhancing.any():
                found.append((_measure(grid, box, core, enhancing, spacing_ij, voxel_ml, minimum, criteria),
                              box, core))
        found.sort(key=lambda item: (-item[0].product_mm2, -item[0].volume_ml))
        for number, (lesion, box, core) in enumerate(found, start=1):
            lesion.id = number
            lesion_ids[box][core] = number
        lesions = [lesion for lesion, _, _ in found]
        for lesion in [lesion for lesion in lesions if lesion.measurable][:criteria.max_targets]:
            lesion.target = True
        result.lesions = lesions
        result.targets = [lesion.id for lesion in lesions if lesion.target]
        result.non_measurable = [lesion.id for lesion in lesions if not lesion.measurable]
        result.sum_of_products_mm2 = round(sum(lesion.product_mm2 for lesion in lesions if lesion.target), 2)
    lesion_map = sitk.GetImageFromArray(lesion_ids)
    lesion_map.CopyInformation(grid)
    result.seconds = round(time.perf_counter() - start, 3)
    return result, lesion_map


def _measure(grid: sitk.Image, box: tuple[slice, ...], core: np.ndarray, enhancing: np.ndarray,
             spacing_ij: tuple[float, float], voxel_ml: float, minimum: float, criteria: RanoCriteria) -> Lesion:
    k, measured = best_slice(enhancing, spacing_ij)
    offset = np.array([box[2].start, box[1].start]) * np.asarray(spacing_ij)  # (i, j) of the box corner, in mm
    k_grid = k + box[0].start
    ends = [[physical_point(grid, p + offset, spacing_ij, k_grid) for p in pair]
            for pair in (measured.longest, measured.perpendicular)]
    longest = Diameter(round(measured.longest_mm, 2), *ends[0])
    perpendicular = Diameter(round(measured.perpendicular_mm, 2), *ends[1])
    slices = int(np.count_nonzero(enhancing.any(axis=(1, 2))))
    reasons = []
    if min(longest.length_mm, perpendicular.length_mm) < minimum:
        reasons.append(f"a diameter under {minimum:g} mm")
    if slices < criteria.min_slices:
        reasons.append(f"seen on {slices} slice (needs {criteria.min_slices})")
    core_slice = core[k]
    necrotic = float(np.count_nonzero(core_slice & ~enhancing[k])) / float(np.count_nonzero(core_slice))
    centre = np.argwhere(enhancing).mean(axis=0) + [b.start for b in box]
    centroid = grid.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre[::-1]])
    return Lesion(id=0, volume_ml=round(int(np.count_nonzero(enhancing)) * voxel_ml, 3),
                  core_volume_ml=round(int(np.count_nonzero(core)) * voxel_ml, 3), slices=slices, slice=k_grid,
                  longest=longest, perpendicular=perpendicular,
                  product_mm2=round(longest.length_mm * perpendicular.length_mm, 2),
                  measurable=not reasons, reason="; ".join(reasons), necrotic_centre=necrotic >= NECROTIC_SHARE,
                  centroid=tuple(round(c, 2) for c in centroid))
