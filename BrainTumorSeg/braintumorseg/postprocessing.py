"""From region probabilities to a clean label map: thresholds, region order, small clusters removed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .labels import internal_from_regions


@dataclass(frozen=True)
class PostprocessSettings:
    """Tumour clusters smaller than `min_cluster_ml` are removed."""

    min_cluster_ml: float = 0.1
    threshold: float = 0.5


def remove_small_clusters(classes: np.ndarray, spacing_zyx: tuple[float, ...],
                          min_cluster_ml: float) -> np.ndarray:
    """Drop connected whole-tumour clusters (26-connected) smaller than the given volume."""
    if min_cluster_ml <= 0 or not classes.any():
        return classes
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    min_voxels = int(np.ceil(min_cluster_ml / voxel_ml))
    tumour = sitk.GetImageFromArray((classes > 0).astype(np.uint8))
    components = sitk.ConnectedComponent(tumour, True)
    kept = sitk.RelabelComponent(components, minimumObjectSize=min_voxels)
    return np.where(sitk.GetArrayViewFromImage(kept) > 0, classes, 0).astype(np.uint8)


def classes_from_probabilities(probabilities: np.ndarray, spacing_zyx: tuple[float, ...],
                               settings: PostprocessSettings = PostprocessSettings()) -> np.ndarray:
    """Threshold (WT, TC, ET) probabilities into internal classes and remove small clusters."""
    classes = internal_from_regions(probabilities > settings.threshold)
    return remove_small_clusters(classes, spacing_zyx, settings.min_cluster_ml)
