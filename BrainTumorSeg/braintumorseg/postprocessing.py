"""From region probabilities to a clean label map: thresholds, region order, small clusters removed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .labels import ED, ET, NCR, internal_from_regions


@dataclass(frozen=True)
class PostprocessSettings:
    """Clusters of any tumour region smaller than `min_cluster_ml` are removed (see `remove_small_clusters`)."""

    min_cluster_ml: float = 0.1
    threshold: float = 0.5


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


def classes_from_probabilities(probabilities: np.ndarray, spacing_zyx: tuple[float, ...],
                               settings: PostprocessSettings = PostprocessSettings()) -> np.ndarray:
    """Threshold (WT, TC, ET) probabilities into internal classes and remove small clusters."""
    classes = internal_from_regions(probabilities > settings.threshold)
    return remove_small_clusters(classes, spacing_zyx, settings.min_cluster_ml)
