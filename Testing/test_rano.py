"""RANO measurements: diameters of synthetic ellipsoids of known axes (spacings, orientations, thick slices), the
criteria's rules, and every diameter of real labels against a brute-force search written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import pdist

from conftest import SHARED_DATA
from braintumorseg.labels import ED, ET, NCR
from braintumorseg.metrics import read_label_map
from braintumorseg.rano import measure_lesions, plane_of
from braintumorseg.rano_results import RANO_2010, RanoMeasurement, measurement_lines


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = [i for i in range(3) if i != axis]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return matrix


def grid(size_xyz, spacing, direction=np.eye(3), origin=(-60.0, -70.0, -50.0)) -> sitk.Image:
    image = sitk.Image([int(n) for n in size_xyz], sitk.sitkUInt8)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in np.asarray(direction).ravel()])
    image.SetOrigin(origin)
    return image


def physical_points(image: sitk.Image) -> np.ndarray:
    """(z, y, x, 3) physical point of every voxel centre."""
    size = image.GetSize()
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    index = np.stack([i, j, k], -1) * np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + index @ direction.T


def ellipsoid(image: sitk.Image, centre, semi_axes, frame: np.ndarray) -> np.ndarray:
    """Voxels (z, y, x) whose centre lies inside the ellipsoid with the given semi-axes along frame's columns."""
    local = (physical_points(image) - np.asarray(centre)) @ frame
    return (((local / np.asarray(semi_axes)) ** 2).sum(-1) <= 1.0)


def classes_of(*masks_and_values) -> np.ndarray:
    out = np.zeros(masks_and_values[0][0].shape, np.uint8)
    for mask, value in masks_and_values:
        out[mask] = value
    return out


CASES = {  # spacing, image direction, in-plane rotation of the lesion (degrees), semi-axes (mm)
    "1 mm axial": ((1.0, 1.0, 1.0), np.eye(3), 0.0, (21.0, 13.0, 9.0)),
    "1 mm rotated lesion": ((1.0, 1.0, 1.0), np.eye(3), 33.0, (21.0, 13.0, 9.0)),
    "0.5 mm in plane, 2 mm slices": ((0.5, 0.5, 2.0), np.eye(3), 71.0, (16.5, 7.25, 9.0)),
    "anisotropic in plane": ((0.6, 1.1, 3.0), np.eye(3), 120.0, (19.0, 11.0, 10.0)),
    "thick 6.5 mm slices": ((0.9375, 0.9375, 6.5), np.eye(3), 15.0, (24.0, 17.0, 20.0)),
    "oblique grid": ((1.0, 1.0, 1.5), rotation(0, 20.0) @ rotation(2, 10.0), 48.0, (18.0, 12.5, 8.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_ellipsoid_diameters_within_a_voxel(name):
    spacing, direction, angle, axes = CASES[name]
    extent = [2.4 * max(axes) / s + 4 for s in spacing]
    image = grid(extent, spacing, direction)
    centre = image.TransformContinuousIndexToPhysicalPoint([n / 2 + 0.27 for n in extent])
    frame = direction @ rotation(2, angle)  # the lesion's axes: in the image's slice plane, then its normal
    mask = ellipsoid(image, centre, axes, frame)
    result = measure_lesions(classes_of((mask, ET)), image)
    assert result.plane == "axial" and len(result.lesions) == 1
    lesion = result.lesions[0]
    voxel = math.hypot(*spacing[:2])  # a voxel's in-plane extent (its diagonal)
    assert abs(lesion.longest.length_mm - 2 * axes[0]) <= voxel, lesion
    assert abs(lesion.perpendicular.length_mm - 2 * axes[1]) <= voxel, lesion
    assert abs(lesion.product_mm2 - 4 * axes[0] * axes[1]) <= 2 * voxel * (axes[0] + axes[1]) + voxel ** 2
    volume = 4 / 3 * math.pi * np.prod(axes) / 1000
    assert lesion.volume_ml == pytest.approx(volume, rel=0.06)
    # the measured slice is the central one, and the two lines lie in it, perpendicular, with the stated lengths
    centre_k = image.TransformPhysicalPointToContinuousIndex(centre)[2]
    assert abs(lesion.slice - centre_k) <= 1.0
    ends = {n: np.array([getattr(lesion, n).start, getattr(lesion, n).end]) for n in ("longest", "perpendicular")}
    for diameter, points in ends.items():
        assert np.linalg.norm(points[1] - points[0]) == pytest.approx(getattr(lesion, diameter).length_mm, abs=0.01)
        for point in points:
            assert image.TransformPhysicalPointToContinuousIndex(point.tolist())[2] == pytest.approx(lesion.slice,
                                                                                                     abs=1e-3)
    long_axis, short_axis = (np.diff(points, axis=0)[0] for points in ends.values())
    assert abs(np.dot(long_axis, short_axis)) <= 1e-3 * np.linalg.norm(long_axis) * np.linalg.norm(short_axis)
    # the long line runs along the lesion's long axis (a voxel at each end tilts it by a few degrees at most)
    cosine = abs(np.dot(long_axis / np.linalg.norm(long_axis), frame[:, 0]))
    assert cosine >= math.cos(math.radians(12))


def test_thick_slices_need_twice_the_thickness():
    """Slices of 6.5 mm: a 11 × 11 mm lesion on three slices is not measurable (it needs 13 mm); 15 mm is."""
    image = grid((80, 80, 12), (1.0, 1.0, 6.5))
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint((30.3, 40.2, 6.0)))
    small = ellipsoid(image, centre, (5.6, 5.6, 9.0), np.eye(3))
    large = ellipsoid(image, centre + (0, 0, 0), (7.6, 7.6, 9.0), np.eye(3))
    assert measure_lesions(classes_of((small, ET)), image).lesions[0].measurable is False
    result = measure_lesions(classes_of((large, ET)), image)
    assert result.min_diameter_mm == 13.0 and result.lesions[0].measurable
    assert "13 mm" in measure_lesions(classes_of((small, ET)), image).lesions[0].reason


def test_a_lesion_on_one_slice_is_not_measurable():
    image = grid((60, 60, 20), (1.0, 1.0, 3.0))
    mask = np.zeros((20, 60, 60), bool)
    mask[10, 10:40, 15:45] = True
    lesion = measure_lesions(classes_of((mask, ET)), image).lesions[0]
    assert not lesion.measurable and "1 slice" in lesion.reason
    assert lesion.longest.length_mm == pytest.approx(math.hypot(30, 30), abs=0.01)  # the square's diagonal
    assert lesion.perpendicular.length_mm == pytest.approx(math.hypot(30, 30), abs=0.01)


def test_ring_lesion_spans_its_necrotic_centre_but_does_not_count_it():
    image = grid((70, 70, 50), (1.0, 1.0, 1.0))
    centre = image.TransformContinuousIndexToPhysicalPoint((35.2, 34.6, 25.1))
    outer = ellipsoid(image, centre, (16.0, 12.0, 10.0), np.eye(3))
    inner = ellipsoid(image, centre, (11.0, 7.0, 5.0), np.eye(3))
    result = measure_lesions(classes_of((outer, ET), (inner, NCR)), image)
    lesion = result.lesions[0]
    assert abs(lesion.longest.length_mm - 32.0) <= 1.0 and abs(lesion.perpendicular.length_mm - 24.0) <= 1.0
    assert lesion.necrotic_centre
    assert lesion.volume_ml == pytest.approx(np.count_nonzero(outer & ~inner) / 1000, abs=1e-3)
    assert result.necrotic_core_ml == pytest.approx(np.count_nonzero(inner) / 1000, abs=1e-3)
    assert result.non_enhancing_ml == result.necrotic_core_ml + result.edema_ml


def test_targets_are_the_largest_measurable_lesions():
    """Five separate measurable lesions and a small one: RANO 2.0 takes 3 targets, RANO 2010 takes 5."""
    image = grid((160, 60, 40), (1.0, 1.0, 2.0))
    masks = [ellipsoid(image, image.TransformContinuousIndexToPhysicalPoint((14 + 27 * n, 30, 20)),
                       (6.0 + n, 6.0 + 0.5 * n, 6.0), np.eye(3)) for n in range(5)]
    masks.append(ellipsoid(image, image.TransformContinuousIndexToPhysicalPoint((150, 30, 20)), (2, 2, 2),
                           np.eye(3)))
    classes = classes_of(*[(mask, ET) for mask in masks])
    classes[(classes == 0) & ellipsoid(image, image.TransformContinuousIndexToPhysicalPoint((80, 30, 20)),
                                       (79, 29, 19), np.eye(3))] = ED
    result = measure_lesions(classes, image)
    assert len(result.lesions) == 6 and result.non_measurable == [6]
    products = [lesion.product_mm2 for lesion in result.lesions]
    assert products == sorted(products, reverse=True)
    assert result.targets == [1, 2, 3]
    assert result.sum_of_products_mm2 == pytest.approx(sum(products[:3]), abs=0.02)
    assert measure_lesions(classes, image, RANO_2010).targets == [1, 2, 3, 4, 5]
    assert result.edema_ml > 0 and result.non_enhancing_ml == pytest.approx(result.edema_ml)
    assert RanoMeasurement.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert "lesion 6 (non-measurable)" in measurement_lines(result)


def test_no_enhancing_tumour():
    image = grid((30, 30, 30), (1.0, 1.0, 1.0))
    classes = np.zeros((30, 30, 30), np.uint8)
    classes[10:20, 10:20, 10:20] = ED
    result = measure_lesions(classes, image)
    assert result.lesions == [] and result.sum_of_products_mm2 == 0 and result.edema_ml == 1.0


def test_sagittal_3d_acquisition_is_measured_on_axial_slices():
    """A 1 mm sagittal T1Gd (slice axis along x): measured on axial slices by reordering its axes; the result is the
    lesion's axial cross-section."""
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # i → P, j → S, k → L
    image = grid((90, 80, 70), (1.0, 1.0, 1.2), sagittal, origin=(-40.0, -50.0, -45.0))
    assert plane_of(image) == "sagittal"
    centre = image.TransformContinuousIndexToPhysicalPoint((45.3, 40.2, 35.1))
    frame = rotation(2, 25.0)  # axes a, b in the axial (x, y) plane, c along z
    mask = ellipsoid(image, centre, (19.0, 12.0, 9.0), frame)
    result = measure_lesions(classes_of((mask, ET)), image)
    lesion = result.lesions[0]
    assert result.plane == "axial" and "sagittal" in result.plane_note
    assert abs(lesion.longest.length_mm - 38.0) <= 1.2 and abs(lesion.perpendicular.length_mm - 24.0) <= 1.2
    assert lesion.longest.start[2] == pytest.approx(lesion.longest.end[2], abs=1e-6)  # an axial line: constant z


def test_thick_coronal_acquisition_is_measured_coronally():
    coronal = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)  # i → L, j → -S, k → P
    image = grid((90, 80, 16), (0.9, 0.9, 5.0), coronal, origin=(-40.0, -35.0, 40.0))
    centre = image.TransformContinuousIndexToPhysicalPoint((45.3, 40.2, 8.0))
    mask = ellipsoid(image, centre, (18.0, 9.0, 14.0), np.eye(3))  # 36 mm along x, 28 along z (in the coronal plane)
    result = measure_lesions(classes_of((mask, ET)), image)
    lesion = result.lesions[0]
    assert result.plane == "coronal"
    assert abs(lesion.longest.length_mm - 36.0) <= 0.9 and abs(lesion.perpendicular.length_mm - 28.0) <= 0.9
    assert lesion.longest.start[1] == pytest.approx(lesion.longest.end[1], abs=1e-6)  # a coronal line: constant y


# ---- real labels against a brute-force search ------------------------------------------------------------------

def all_corners(mask: np.ndarray) -> np.ndarray:
    """Every corner (in index units, x = column, y = row) of every pixel of a 2D mask."""
    rows, columns = np.nonzero(mask)
    return np.concatenate([np.stack([columns + dx, rows + dy], 1) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])


def brute_longest(mask: np.ndarray) -> float:
    """The largest distance (mm, 1 mm pixels) between any two corners of any two pixels."""
    return float(pdist(all_corners(mask)).max())


def brute_perpendicular(mask: np.ndarray, direction: np.ndarray, step: float = 0.02) -> float:
    """The longest extent of the mask along lines perpendicular to `direction`, by dense sampling: lines every
    `step` mm, points every `step` mm along each, each point tested for being inside a pixel."""
    u = direction / np.linalg.norm(direction)
    v = np.array([-u[1], u[0]])
    corners = all_corners(mask)
    t_values = np.arange((corners @ u).min(), (corners @ u).max() + step, step)
    s_values = np.arange((corners @ v).min(), (corners @ v).max() + step, step)
    best = 0.0
    for t in t_values:
        points = t * u + s_values[:, None] * v
        columns, rows = np.floor(points[:, 0] + 0.5).astype(int), np.floor(points[:, 1] + 0.5).astype(int)
        valid = (rows >= 0) & (rows < mask.shape[0]) & (columns >= 0) & (columns < mask.shape[1])
        inside = np.zeros(len(points), bool)
        inside[valid] = mask[rows[valid], columns[valid]]
        if inside.any():
            best = max(best, float(s_values[inside].max() - s_values[inside].min()))
    return best


def real_labels() -> list:
    from braintumorseg.resources import sample_case
    files = [sample_case()["label"]]
    files += sorted((SHARED_DATA / "brats2018").glob("*/*_seg.nii.gz"))[:2]
    return files


@pytest.mark.parametrize("path", real_labels(), ids=lambda p: p.name.split("_seg")[0])
def test_real_label_diameters_match_a_brute_force_search(path):
    classes, image = read_label_map(path, "brats2021", "label")
    assert image.GetSpacing() == (1.0, 1.0, 1.0) and plane_of(image) == "axial"
    result = measure_lesions(classes, image)
    assert result.lesions
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(
        sitk.GetImageFromArray(np.isin(classes, (NCR, ET)).astype(np.uint8)), True))
    for lesion in result.lesions:
        k = lesion.slice
        in_lesion = [c for c in np.unique(components[k][classes[k] == ET])
                     if np.count_nonzero((components == c) & (classes == ET)) / 1000 == pytest.approx(lesion.volume_ml,
                                                                                                     abs=5e-4)]
        assert in_lesion, f"lesion {lesion.id}: no component of {lesion.volume_ml} mL"
        mask = (components[k] == in_lesion[0]) & (classes[k] == ET)
        assert lesion.longest.length_mm == pytest.approx(brute_longest(mask), abs=0.006)
        start, end = (np.array(image.TransformPhysicalPointToContinuousIndex(p))[:2]
                      for p in (lesion.longest.start, lesion.longest.end))
        expected = brute_perpendicular(mask, end - start)
        assert expected - 0.006 <= lesion.perpendicular.length_mm <= expected + 0.06, lesion.id
        lesion_voxels = (components == in_lesion[0]) & (classes == ET)
        longest_everywhere = [brute_longest(lesion_voxels[z]) for z in np.flatnonzero(lesion_voxels.any(axis=(1, 2)))]
        assert lesion.longest.length_mm <= max(longest_everywhere) + 0.006
        assert lesion.slices == len(longest_everywhere)


def test_segment_report_and_command_line_carry_the_measurements(capsys, tiny_card, synthetic, tmp_path):
    """The report's rano section is the measurement of the label map the run wrote (on the T1Gd grid)."""
    from braintumorseg.cli import main
    output, report = tmp_path / "labels.nii.gz", tmp_path / "report.json"
    assert main(["segment", "--t1c", str(synthetic["t1c"]), "--flair", str(synthetic["flair"]), "-o", str(output),
                 "--report", str(report), "--model", str(tiny_card.path), "--no-bias-correction", "--no-tta"]) == 0
    section = json.loads(report.read_text())["rano"]
    classes, image = read_label_map(output, "brats2021", "labels")
    expected = json.loads(json.dumps(measure_lesions(classes, image).to_dict()))
    assert {k: v for k, v in section.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}
    printed = capsys.readouterr().out
    assert "RANO 2.0 measurements (axial" in printed and "Imaging measurements only" in printed

