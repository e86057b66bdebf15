"""Clusters of tumour core far from the tumour, or at the edge of the imaged volume, are named in the report."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from braintumorseg.labels import ED, ET, NCR
from braintumorseg.pipeline import core_cluster_warnings
from braintumorseg.postprocessing import edge_faces, stray_core_clusters

SPACING = (5.0, 1.0, 1.0)  # thick slices, as a clinical T1Gd


def case() -> np.ndarray:
    """A tumour in the middle, a small core cluster 40 mm away, enhancing tumour on the bottom slice."""
    classes = np.zeros((20, 80, 80), np.uint8)
    classes[8:12, 30:50, 10:30] = ED
    classes[9:11, 35:45, 15:25] = NCR
    classes[10, 38:42, 18:22] = ET
    classes[9:11, 35:40, 65:72] = ET  # 40 mm from the main core along x
    classes[0, 60:70, 40:50] = ET  # on the bottom slice
    return classes


def test_far_and_edge_core_clusters_are_found_and_named():
    faces = (True, True, True, True, True, True)
    found = stray_core_clusters(case(), SPACING, faces)
    assert len(found) == 2
    edge = next(c for c in found if c.at_edge)
    far = next(c for c in found if not c.at_edge)
    assert edge.volume_ml == edge.enhancing_ml == 0.5 and edge.distance_mm > 20
    assert far.volume_ml == 0.35 and 38 <= far.distance_mm <= 42
    lines = core_cluster_warnings(found)
    assert len(lines) == 2
    assert "touching the edge of the imaged volume" in lines[0] and "0.5 mL enhancing" in lines[0]
    assert "mm from the main tumour core" in lines[1] and "Islands effect" in lines[1]


def test_a_single_tumour_inside_the_volume_gives_no_warning():
    classes = case()
    classes[0] = 0
    classes[:, :, 60:] = 0
    assert stray_core_clusters(classes, SPACING, (True,) * 6) == []
    assert stray_core_clusters(np.zeros((4, 4, 4), np.uint8), SPACING, (True,) * 6) == []


def test_only_faces_on_the_grid_border_count_as_edges():
    grid = sitk.Image([80, 80, 20], sitk.sitkUInt8)
    assert edge_faces(grid, (slice(0, 20), slice(5, 80), slice(None))) == (True, True, False, True, True, True)
    classes = case()
    found = stray_core_clusters(classes, SPACING, edge_faces(grid, (slice(1, 20), slice(0, 80), slice(0, 80))))
    assert [c.at_edge for c in found] == [False, False]  # the box starts above the bottom slice: no edge there
