"""The network sees a case in the orientation it was trained on, however the volume stores its axes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.inference import InferenceSettings
from braintumorseg.labels import REGIONS, to_internal
from braintumorseg.metrics import region_scores
from braintumorseg.modelcard import ModelCard
from braintumorseg.network_space import TRAINING_ORIENTATION, atlas_grid, reoriented, rotation_of
from braintumorseg.pipeline import Pipeline, SegmentationSettings
from braintumorseg.preprocessing import PreprocessSettings
from braintumorseg.resources import default_model_card

MODALITIES = ("t1", "t1c", "t2", "flair")
# (axes permutation, axes flipped) of the axial LPS sample: a sagittal (slices along x) and a coronal storage.
STORAGES = {"sagittal": ([2, 0, 1], [True, False, False]), "coronal": ([0, 2, 1], [False, True, True])}


def stored(image: sitk.Image, permutation, flips) -> sitk.Image:
    """The same voxels in the same physical place, their axes stored in another order and direction."""
    return sitk.Flip(sitk.PermuteAxes(image, permutation), flips)


@pytest.fixture(scope="module")
def crop(sample) -> dict[str, sitk.Image]:
    """A 100 x 100 x 80 mm real crop around the sample's tumour (1 mm, axial LPS)."""
    images = {m: sitk.ReadImage(str(sample[m]), sitk.sitkFloat32) for m in MODALITIES}
    return {m: image[70:170, 60:160, 40:120] for m, image in images.items()}


def test_reorientation_is_a_pure_permutation(crop):
    sagittal = stored(crop["t1c"], *STORAGES["sagittal"])
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(sagittal.GetDirection()) != "LPS"
    back = reoriented(sagittal)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(back.GetDirection()) == TRAINING_ORIENTATION
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(crop["t1c"]))
    np.testing.assert_allclose(back.GetOrigin(), crop["t1c"].GetOrigin())


def test_axial_sagittal_and_coronal_storage_give_the_same_labels(crop):
    settings = SegmentationSettings(preprocess=PreprocessSettings(bias_correction=False, skull_strip="off"),
                                    inference=InferenceSettings(tta=False))
    pipeline = Pipeline(ModelCard.load(default_model_card()), settings)
    axial, report = pipeline.segment_images(dict(crop))
    assert report.network_space == "native" and report.volumes_ml["whole_tumour"] > 20
    reference = to_internal(sitk.GetArrayFromImage(axial).astype(np.int64), "brats2021")
    for name, (permutation, flips) in STORAGES.items():
        labels, report = pipeline.segment_images({m: stored(i, permutation, flips) for m, i in crop.items()})
        assert report.network_space == "native, reoriented LPS"
        assert labels.GetSize() == tuple(crop["t1c"].GetSize()[p] for p in permutation)  # on the input's own grid
        on_axial = sitk.Resample(labels, axial, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        scores = region_scores(to_internal(sitk.GetArrayFromImage(on_axial).astype(np.int64), "brats2021"),
                               reference, (1.0, 1.0, 1.0))
        print(name, {r: round(scores[r]["dice"], 4) for r in REGIONS})
        assert all(scores[r]["dice"] >= 0.98 for r in REGIONS), name


def test_the_atlas_grid_follows_the_template_axes_and_covers_the_brain(crop):
    image = crop["t1c"]
    brain = sitk.GetArrayFromImage(image) > 0
    turn = sitk.AffineTransform(3)
    turn.SetMatrix(sitk.Euler3DTransform((0, 0, 0), 0.0, 0.0, np.radians(20)).GetMatrix())
    grid = atlas_grid(image, brain, turn, spacing_mm=2.0)
    np.testing.assert_allclose(np.array(grid.GetDirection()).reshape(3, 3), rotation_of(turn), atol=1e-9)
    np.testing.assert_allclose(rotation_of(turn), np.array(turn.GetInverse().GetMatrix()).reshape(3, 3), atol=1e-9)
    ones = sitk.Image(grid.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(grid)
    inside = sitk.GetArrayFromImage(sitk.Resample(ones, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
    assert inside[brain].all(), "the atlas grid must hold the whole brain"
