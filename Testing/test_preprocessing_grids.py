"""Inputs on different grids (spacing, size, origin, LPS/RAS, oblique) end up on the reference grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.images import same_grid
from braintumorseg.registration import RegistrationSettings
from braintumorseg.modalities import reference_modality
from braintumorseg.pipeline import Pipeline, SegmentationSettings
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor, foreground_mask

CENTRE = np.array([3.0, -5.0, 8.0])


def phantom(points: np.ndarray) -> np.ndarray:
    """A smooth 'brain' defined in physical space (LPS mm): zero outside a 34 mm ball."""
    offset = points - CENTRE
    radius = np.linalg.norm(offset, axis=-1)
    texture = 300 + 100 * np.sin(offset[..., 0] / 9.0) + 60 * np.cos(offset[..., 1] / 7.0) + 2 * offset[..., 2]
    return np.where(radius < 34, texture, 0.0).astype(np.float32)


def sampled(size, spacing, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    """The phantom sampled on a grid; the array is built from each voxel's physical point."""
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction])
    k, j, i = np.meshgrid(*[np.arange(n) for n in reversed(image.GetSize())], indexing="ij")
    index = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    matrix = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    points = np.array(image.GetOrigin()) + index @ matrix.T
    array = phantom(points).reshape(k.shape)
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def oblique(degrees: float) -> tuple[float, ...]:
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return tuple(rotation.ravel())


@pytest.fixture(scope="module")
def grids() -> dict[str, sitk.Image]:
    """t1c: the reference, oblique; flair: RAS-stored; t2: 3 mm anisotropic; t1: larger field of view."""
    return {
        "t1c": sampled((36, 38, 34), (2.0, 2.0, 2.0), (-32.0, -42.0, -25.0), oblique(8.0)),
        "flair": sampled((40, 40, 36), (2.0, 2.0, 2.0), (43.0, 35.0, -27.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
        "t2": sampled((28, 30, 24), (2.6, 2.6, 3.0), (-34.0, -44.0, -27.0)),
        "t1": sampled((50, 52, 44), (1.8, 1.8, 2.2), (-44.0, -55.0, -38.0)),
    }


def test_ras_copy_of_an_lps_image_aligns_exactly():
    """The same voxels stored RAS (x and y flipped, origin at the far corner) land exactly on the LPS grid."""
    lps = sampled((20, 22, 18), (2.0, 2.0, 2.5), (-20.0, -25.0, -10.0))
    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(lps)[:, ::-1, ::-1].copy())
    flipped.SetSpacing(lps.GetSpacing())
    flipped.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    flipped.SetOrigin(lps.TransformIndexToPhysicalPoint((19, 21, 0)))
    assert not same_grid(flipped, lps)
    reference, arrays, warnings = Preprocessor(PreprocessSettings(bias_correction=False, register="off")).align(
        {"t1c": lps, "flair": flipped})[:3]
    assert reference is lps
    np.testing.assert_allclose(arrays["flair"], sitk.GetArrayFromImage(lps), atol=1e-3)
    assert any("resampled" in w for w in warnings)


def test_inputs_on_other_grids_are_resampled_in_physical_space(grids):
    reference, arrays, _ = Preprocessor(PreprocessSettings(register="off")).align(grids)[:3]
    assert reference is grids["t1c"]
    expected = sitk.GetArrayFromImage(grids["t1c"])
    inside = expected > 0
    # erode the ball so that the partial-volume rim does not dominate
    core = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(inside.astype(np.uint8)), [2] * 3)) > 0
    for modality in ("flair", "t2", "t1"):
        assert arrays[modality].shape == expected.shape
        error = np.abs(arrays[modality] - expected)[core] / expected[core]
        assert np.median(error) < 0.01, modality
        assert np.percentile(error, 99) < 0.06, modality


def test_same_grid_input_is_copied_not_resampled(grids):
    t1c = grids["t1c"]
    copy = sitk.Image(t1c) * 2.0
    _, arrays, warnings = Preprocessor().align({"t1c": t1c, "t2": copy})[:3]
    np.testing.assert_array_equal(arrays["t2"], sitk.GetArrayFromImage(copy))
    assert warnings == []


def test_the_brain_mask_comes_from_the_sequences_on_the_reference_grid():
    """A FLAIR of 6 mm slices, resampled onto the 2 mm T1Gd, spreads past the brain's edge by half a slice; that
    shell is not brain, so the mask (and every channel's z-score) is the T1Gd's foreground alone."""
    t1c = sampled((36, 38, 34), (2.0, 2.0, 2.0), (-32.0, -42.0, -25.0))
    flair = sampled((36, 38, 12), (2.0, 2.0, 6.0), (-32.0, -42.0, -27.0))
    preprocessor = Preprocessor(PreprocessSettings(bias_correction=False, register="off"))
    reference, arrays = preprocessor.align({"t1c": t1c, "flair": flair})[:2]
    prepared = preprocessor.run({"t1c": t1c, "flair": flair})
    own = sitk.GetArrayFromImage(t1c) != 0
    assert prepared.mask.sum() == own.sum() and prepared.mask.all(where=own[prepared.box])
    assert foreground_mask(arrays).sum() > 1.05 * own.sum()  # the union the mask was before: 5 % more "brain"
    assert prepared.scanner_native and prepared.thick_slices == ("flair",)


def test_registration_recovers_a_shift():
    reference = sampled((36, 36, 32), (2.0, 2.0, 2.0), (-33.0, -41.0, -24.0))
    moved = sampled((36, 36, 32), (2.0, 2.0, 2.0), (-33.0, -41.0, -24.0))
    moved.SetOrigin(tuple(np.array(moved.GetOrigin()) + (5.0, -4.0, 3.0)))  # content shifted by 5, -4, 3 mm
    unregistered = Preprocessor(PreprocessSettings(register=False)).align({"t1c": reference, "t1": moved})[1]
    registered = Preprocessor(PreprocessSettings(register=True, registration=RegistrationSettings(
        sampling_fraction=0.2))).align({"t1c": reference, "t1": moved})[1]
    expected = sitk.GetArrayFromImage(reference)
    inside = expected > 0
    before = np.abs(unregistered["t1"] - expected)[inside].mean()
    after = np.abs(registered["t1"] - expected)[inside].mean()
    assert after < 0.25 * before


@pytest.mark.parametrize("subset", [("t1c", "flair", "t2", "t1"), ("flair", "t2"), ("t2", "t1"), ("t1",),
                                    ("t2",)])
def test_any_subset_gives_labels_on_the_reference_grid(grids, tiny_card, subset):
    images = {m: grids[m] for m in subset}
    settings = SegmentationSettings(preprocess=PreprocessSettings(bias_correction=False, network_space="native"))
    labels, report = Pipeline(tiny_card, settings).segment_images(images)
    reference = grids[reference_modality(list(subset))]
    assert report.reference == reference_modality(list(subset))
    assert labels.GetSize() == reference.GetSize()
    np.testing.assert_allclose(labels.GetSpacing(), reference.GetSpacing())
    np.testing.assert_allclose(labels.GetOrigin(), reference.GetOrigin())
    np.testing.assert_allclose(labels.GetDirection(), reference.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(labels)).tolist()) <= {0, 1, 2, 4}
    assert set(report.volumes_ml) == {"necrotic_core", "edema", "enhancing", "tumour_core", "whole_tumour"}
    assert report.thick_slices == (["t2"] if "t2" in subset else [])  # 3 mm apart; the others 2-2.2 mm


def test_reference_choice():
    assert reference_modality(["t1", "t2", "flair", "t1c"]) == "t1c"
    assert reference_modality(["t2", "flair"]) == "flair"
    assert reference_modality(["t2", "t1"]) == "t1"
