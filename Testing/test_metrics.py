"""Dice and HD95 against hand-computed values and against the BraTS evaluation's own sample results."""

from __future__ import annotations

import numpy as np
import pytest

from braintumorseg.errors import InputError
from braintumorseg.labels import ED, ET, NCR
from braintumorseg.metrics import MAX_HD95_MM, dice, evaluate_files, hd95, read_label_map, region_scores

from conftest import SHARED_DATA, write_label_maps

BRATS_SAMPLES = SHARED_DATA / "metrics_samples" / "BraTS_evaluation_MET_samples"

# Published by BraTS/BraTS_evaluation @ 791134c, example/sample_mets_metrics.json: per case and region,
# global_bin_dsc and global_bin_hd95 (the latter in voxel units: that evaluation ignores the spacing).
BRATS_RESULTS = {
    ("00132-000", "BraTS-MET-00132-000"): {
        "WT": (0.7564775269473256, 31.843366656181317), "TC": (0.6887811516543336, 33.54101966249684),
        "ET": (0.6840802390098165, 33.52610922848042)},
    ("SEG-00217-000", "BraTS-MET-00217-000"): {
        "WT": (0.8260158633312996, 5.0), "TC": (0.896434730979106, 2.23606797749979),
        "ET": (0.7913234934355378, 2.8284271247461903)},
    ("BraTS-MET-00630-001", "BraTS-MET-00630-001"): {
        "WT": (0.9275450621985275, 1.4142135623730951), "TC": (0.9266599484940097, 1.0),
        "ET": (0.9147945524385985, 1.0)},
    ("BraTS-MET_01325-000", "BraTS-MET-01325-000"): {
        "WT": (0.9854805103820593, 1.0), "TC": (0.9751643535427319, 1.0), "ET": (0.9721611721611721, 1.0)},
}


def cubes(shift_x: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((20, 20, 20), bool)
    b = np.zeros((20, 20, 20), bool)
    a[5:10, 5:10, 5:10] = True
    b[5:10, 5:10, 5 + shift_x:10 + shift_x] = True
    return a, b


def test_dice_by_hand():
    a, b = cubes(2)
    assert dice(a, b) == pytest.approx(2 * 75 / 250)  # overlap 5x5x3 of two 125-voxel cubes
    assert dice(a, a) == 1.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_hd95_of_shifted_cubes_by_hand():
    # The 25 voxels of each cube's far face are 2 voxels from the other surface; every other surface
    # voxel is 0 to 2 away, so at least a quarter of the pooled distances equal the maximum, 2 voxels.
    a, b = cubes(2)
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(a, b, (1.0, 1.0, 2.0)) == pytest.approx(4.0)   # x spacing (last axis) 2 mm
    assert hd95(a, b, (3.0, 3.0, 1.0)) == pytest.approx(2.0)   # spacing across the shift does not matter


def test_hd95_pools_both_directions_by_hand():
    a = np.zeros((3, 3, 20), bool)
    b = np.zeros((3, 3, 20), bool)
    a[1, 1, 5] = True
    b[1, 1, 5] = b[1, 1, 15] = True
    # distances a->b: [0]; b->a: [0, 10]; 95th percentile of [0, 0, 10] (linear) = 0.9 * 10
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(9.0)
    assert hd95(a, b, (1.0, 1.0, 0.5)) == pytest.approx(4.5)
    assert hd95(b, a, (1.0, 1.0, 1.0)) == pytest.approx(9.0)


def test_empty_regions_follow_the_brats_rules():
    empty = np.zeros((6, 6, 6), np.uint8)
    edema = empty.copy()
    edema[2:4, 2:4, 2:4] = ED
    scores = region_scores(edema, edema, (1, 1, 1))
    assert scores["WT"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["TC"] == {"dice": 1.0, "hd95": 0.0} and scores["ET"] == {"dice": 1.0, "hd95": 0.0}
    missed = region_scores(empty, edema, (1, 1, 1))
    assert missed["WT"] == {"dice": 0.0, "hd95": MAX_HD95_MM} and missed["ET"]["dice"] == 1.0
    assert region_scores(edema, empty, (1, 1, 1))["WT"] == {"dice": 0.0, "hd95": MAX_HD95_MM}
    assert MAX_HD95_MM == pytest.approx(373.13, abs=0.01)


def test_regions_are_built_from_classes():
    prediction = np.zeros((8, 8, 8), np.uint8)
    reference = np.zeros((8, 8, 8), np.uint8)
    prediction[2:6, 2:6, 2:6] = ED
    prediction[3:5, 3:5, 3:5] = ET
    reference[2:6, 2:6, 2:6] = ED
    reference[3:5, 3:5, 3:5] = NCR
    scores = region_scores(prediction, reference, (1, 1, 1))
    assert scores["WT"]["dice"] == 1.0
    assert scores["TC"]["dice"] == 1.0          # NCR and ET are both tumour core
    assert scores["ET"] == {"dice": 0.0, "hd95": MAX_HD95_MM}


def test_label_files_with_conventions(tmp_path):
    brats2015 = np.zeros((10, 10, 10), np.uint8)
    brats2015[2:8, 2:8, 2:8] = 2
    brats2015[3:6, 3:6, 3:6] = 3
    brats2015[6:7, 3:6, 3:6] = 1
    brats2015[4:5, 4:5, 4:6] = 4
    internal = np.select([brats2015 == 1, brats2015 == 3, brats2015 == 2, brats2015 == 4],
                         [NCR, NCR, ED, ET], 0).astype(np.uint8)
    nnunet = np.select([internal == ED, internal == NCR, internal == ET], [1, 2, 3], 0).astype(np.uint8)
    paths = write_label_maps(tmp_path, {"ref2015": brats2015, "prednn": nnunet}, (0.8, 0.8, 1.5))
    scores = evaluate_files(paths["prednn"], paths["ref2015"], "nnunet", "brats2015")
    assert all(s == {"dice": 1.0, "hd95": 0.0} for s in scores.values())
    with pytest.raises(InputError, match="brats2023"):
        evaluate_files(paths["prednn"], paths["ref2015"], "nnunet", "brats2023")


@pytest.mark.skipif(not BRATS_SAMPLES.is_dir(), reason=f"BraTS evaluation samples not present "
                    f"({BRATS_SAMPLES} is only on the development machine)")
@pytest.mark.parametrize("names", list(BRATS_RESULTS), ids=[n[1] for n in BRATS_RESULTS])
def test_against_the_brats_evaluation_results(names):
    prediction_name, reference_name = names
    prediction, _ = read_label_map(BRATS_SAMPLES / "pred" / f"{prediction_name}.nii.gz", "brats2023", "p")
    reference, _ = read_label_map(BRATS_SAMPLES / "ref" / f"{reference_name}-seg.nii.gz", "brats2023", "r")
    expected = BRATS_RESULTS[names]
    in_voxels = region_scores(prediction, reference, (1.0, 1.0, 1.0))
    for region, (expected_dice, expected_hd95) in expected.items():
        assert in_voxels[region]["dice"] == pytest.approx(expected_dice, abs=1e-6)
        assert in_voxels[region]["hd95"] == pytest.approx(expected_hd95, abs=1e-4)


@pytest.mark.skipif(not BRATS_SAMPLES.is_dir(), reason=f"BraTS evaluation samples not present "
                    f"({BRATS_SAMPLES} is only on the development machine)")
def test_evaluate_files_on_a_brats_sample():
    scores = evaluate_files(BRATS_SAMPLES / "pred" / "00132-000.nii.gz",
                            BRATS_SAMPLES / "ref" / "BraTS-MET-00132-000-seg.nii.gz", "brats2023", "brats2023")
    for region, (expected_dice, expected_hd95) in BRATS_RESULTS[("00132-000", "BraTS-MET-00132-000")].items():
        assert scores[region]["dice"] == pytest.approx(expected_dice, abs=1e-6)
        assert scores[region]["hd95"] == pytest.approx(expected_hd95, abs=1e-4)  # 1 mm: mm = voxels
