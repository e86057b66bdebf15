"""From region probabilities to a clean label map: thresholds, region order, small clusters removed, clusters of
edema alone found."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .labels import ED, ET, NCR, internal_from_regions


@dataclass(frozen=True)
class PostprocessSettings:
    """Clusters of any tumour region smaller than `min_cluster_ml` are removed (see `remove_small_clusters`)."""

    min_cluster_ml: float = 0.1


# From the outside in: a region's classes, and what a too-small cluster of it becomes (the next region out).
SHRINK = (((NCR, ED, ET), 0), ((NCR, ET), ED), ((ET,), NCR))


def _large_clusters(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """The voxels of `mask` in 26-connected clusters of at least `min_voxels`."""
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    return sitk.GetArrayFromImage(sitk.RelabelComponent(components, minimumObjectSize=min_voxels)) > 0


def remove_small_clusters(classes: np.ndarray, spacing_zyx: tuple[float, ...],
                          min_cluster_ml: float) -> np.ndarray:
    """Clusters smaller than the given volume become the next region out: a whole-tumour cluster background,
    a tumour-core cluster edema, an enhancing-tumour cluster necrotic/non-enhancing core."""
    if min_cluster_ml <= 0 or not classes.any():
        return classes
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    min_voxels = int(np.ceil(min_cluster_ml / voxel_ml))
    out = classes.copy()
    for members, replacement in SHRINK:
        region = np.isin(out, members)
        if region.any():
            out[region & ~_large_clusters(region, min_voxels)] = replacement
    return out


@dataclass(frozen=True)
class CorelessCluster:
    """A whole-tumour cluster without tumour core, apart from the core of the tumour."""

    volume_ml: float
    distance_mm: float  # between its centre and the centre of the largest cluster that holds core


def coreless_clusters(classes: np.ndarray, spacing_zyx: tuple[float, ...]) -> list[CorelessCluster]:
    """Clusters (26-connected) of edema alone beside a cluster that holds core, largest first. They are often
    false islands, and sometimes true satellite lesions (expert labels have them), so they are shown, not
    removed."""
    tumour = sitk.GetImageFromArray((classes > 0).astype(np.uint8))
    core = sitk.GetImageFromArray(np.isin(classes, (NCR, ET)).astype(np.uint8))
    for image in (tumour, core):
        image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    components = sitk.ConnectedComponent(tumour, True)
    shapes = sitk.LabelShapeStatisticsImageFilter()
    shapes.ComputePerimeterOff()
    shapes.Execute(components)
    labels = shapes.GetLabels()
    if len(labels) < 2:
        return []
    cores = sitk.LabelStatisticsImageFilter()
    cores.Execute(core, components)
    cored = [label for label in labels if cores.GetMaximum(label) > 0]
    if not cored:
        return []
    main = np.array(shapes.GetCentroid(max(cored, key=shapes.GetNumberOfPixels)))
    found = [CorelessCluster(round(shapes.GetPhysicalSize(label) / 1000.0, 2),
                             round(float(np.linalg.norm(np.array(shapes.GetCentroid(label)) - main)), 1))
             for label in labels if label not in cored]
    return sorted(found, key=lambda c: -c.volume_ml)


def classes_from_probabilities(probabilities: np.ndarray, spacing_zyx: tuple[float, ...],
                               settings: PostprocessSettings, threshold: float) -> np.ndarray:
    """Threshold (WT, TC, ET) probabilities at the model card's threshold into internal classes and remove small
    clusters."""
    classes = internal_from_regions(probabilities > threshold)
    return remove_small_clusters(classes, spacing_zyx, settings.min_cluster_ml)


FAR_FROM_CORE_MM = 20.0


@dataclass(frozen=True)
class StrayCoreCluster:
    """A cluster of tumour core (necrotic or enhancing) apart from the largest one, or touching the edge of the
    imaged volume (where thick slices end, false core is common)."""

    volume_ml: float
    enhancing_ml: float
    distance_mm: float  # from the largest core cluster (0 for that cluster itself)
    at_edge: bool


def edge_faces(grid: sitk.Image, box: tuple[slice, ...]) -> tuple[bool, ...]:
    """For a box of a (z, y, x) grid: whether its low and high face along z, y, x lie on the grid's border."""
    shape = tuple(reversed(grid.GetSize()))
    faces = []
    for axis, part in enumerate(box):
        start, stop, _ = part.indices(shape[axis])
        faces += [start == 0, stop == shape[axis]]
    return tuple(faces)


def stray_core_clusters(classes: np.ndarray, spacing_zyx: tuple[float, ...], faces: tuple[bool, ...],
                        far_mm: float = FAR_FROM_CORE_MM) -> list[StrayCoreCluster]:
    """Core clusters (26-connected) farther than `far_mm` from the largest core cluster, and core clusters that
    touch a face of the array that is the edge of the imaged volume (`faces`, see `edge_faces`); largest first."""
    core = np.isin(classes, (NCR, ET))
    if not core.any():
        return []
    image = sitk.GetImageFromArray(core.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    components = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(image, True)))
    main = sitk.GetImageFromArray((components == 1).astype(np.uint8))
    main.CopyInformation(image)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(main, insideIsPositive=False,
                                                                   squaredDistance=False, useImageSpacing=True))
    edge = np.zeros(core.shape, bool)
    for axis in range(3):
        for side, on_border in zip((0, -1), faces[2 * axis:2 * axis + 2]):
            if on_border:
                index = [slice(None)] * 3
                index[axis] = side
                edge[tuple(index)] = True
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    found = []
    for label in range(1, int(components.max()) + 1):
        member = components == label
        away = 0.0 if label == 1 else float(max(0.0, distance[member].min()))
        at_edge = bool((member & edge).any())
        if away > far_mm or at_edge:
            found.append(StrayCoreCluster(round(member.sum() * voxel_ml, 2),
                                          round(float((member & (classes == ET)).sum()) * voxel_ml, 2),
                                          round(away, 1), at_edge))
    return sorted(found, key=lambda c: -c.volume_ml)
