"""Post-processing: small clusters removed or turned into the next region out, edema islands found and named."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from braintumorseg.labels import (
    ED,
    ET,
    NCR,
)
from braintumorseg.pipeline import island_warnings
from braintumorseg.postprocessing import (
    CorelessCluster,
    coreless_clusters,
    remove_small_clusters,
)


@pytest.fixture
def card_copy(tiny_card, tmp_path):
    """A private copy of the tiny card and its weights that a test may damage."""
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / tiny_card.path.name


def test_small_clusters_are_removed_large_kept():
    classes = np.zeros((30, 30, 30), np.uint8)
    classes[2:12, 2:12, 2:12] = ED          # 1000 voxels = 1 mL at 1 mm
    classes[4:9, 4:9, 4:9] = ET             # 125 voxels
    classes[20:22, 20:22, 20:22] = NCR      # 8 voxels = 0.008 mL
    classes[25, 25, 25] = ET                # 1 voxel
    kept = remove_small_clusters(classes, (1.0, 1.0, 1.0), min_cluster_ml=0.05)
    np.testing.assert_array_equal(kept[:15, :15, :15], classes[:15, :15, :15])
    assert not kept[15:, 15:, 15:].any()
    np.testing.assert_array_equal(remove_small_clusters(classes, (1.0, 1.0, 1.0), 0.0), classes)
    # at 4 mm the 8-voxel cluster is 0.512 mL and stays
    assert remove_small_clusters(classes, (4.0, 4.0, 4.0), 0.5)[20, 20, 20] == NCR


def test_small_clusters_inside_the_tumour_become_the_next_region_out():
    """A speck of core in edema becomes edema, a speck of enhancing tumour in the core becomes core."""
    classes = np.zeros((30, 30, 30), np.uint8)
    classes[2:28, 2:28, 2:28] = ED
    classes[5:12, 5:12, 5:12] = NCR         # 343 voxels of core, kept
    classes[7:10, 7:10, 7:10] = ET          # 27 voxels of enhancing tumour inside it
    classes[20:23, 20:23, 20:23] = ET       # 27 voxels of core (all enhancing) inside the edema
    classes[15:22, 4:11, 4:11] = NCR        # 343 voxels of core with a 1-voxel enhancing speck
    classes[18, 7, 7] = ET
    kept = remove_small_clusters(classes, (1.0, 1.0, 1.0), min_cluster_ml=0.05)
    expected = classes.copy()
    expected[7:10, 7:10, 7:10] = NCR
    expected[20:23, 20:23, 20:23] = ED
    expected[18, 7, 7] = NCR
    np.testing.assert_array_equal(kept, expected)
    classes[6:11, 6:11, 6:11] = ET          # 125 voxels of enhancing tumour: kept
    np.testing.assert_array_equal(remove_small_clusters(classes, (1.0, 1.0, 1.0), 0.05)[6:11, 6:11, 6:11], ET)


def test_clusters_of_edema_alone_beside_the_tumour_are_found_with_size_and_distance():
    classes = np.zeros((40, 40, 40), np.uint8)
    classes[2:12, 2:12, 2:12] = ED
    classes[4:10, 4:10, 4:10] = NCR          # the tumour: centre (6.5, 6.5, 6.5)
    classes[30:34, 30:34, 30:34] = ED         # 64 voxels of edema alone: centre (31.5, 31.5, 31.5)
    classes[20:22, 2:4, 2:4] = ED             # 8 voxels of edema alone: centre (20.5, 2.5, 2.5)
    assert coreless_clusters(classes, (1.0, 1.0, 1.0)) == [CorelessCluster(0.06, round(25 * np.sqrt(3), 1)),
                                                           CorelessCluster(0.01, round(np.sqrt(14 ** 2 + 32), 1))]
    assert coreless_clusters(classes, (2.0, 1.0, 1.0))[0].volume_ml == 0.13  # anisotropic voxels count in mL
    classes[14:16, 14:16, 14:16] = ET         # a second, smaller cluster with core: distances stay from the largest
    assert [c.volume_ml for c in coreless_clusters(classes, (1.0, 1.0, 1.0))] == [0.06, 0.01]
    assert coreless_clusters(np.where(classes == ED, ED, 0).astype(np.uint8), (1.0, 1.0, 1.0)) == []  # no core
    assert coreless_clusters(classes[:13, :13, :13], (1.0, 1.0, 1.0)) == []  # one cluster


def test_island_warnings_name_the_largest_and_count_the_rest():
    clusters = [CorelessCluster(v, 40.0) for v in (2.0, 1.5, 1.0, 0.5, 0.25)]
    lines = island_warnings(clusters)
    assert len(lines) == 4 and lines[0].startswith("a separate 2.0 mL cluster of edema without tumour core, 40 mm")
    assert "Islands effect" in lines[0]
    assert lines[-1] == "2 more such clusters, of 0.8 mL together."
    assert island_warnings([]) == []
