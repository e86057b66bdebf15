"""Registration decided by the engine (`--register auto`) and checked after it is done, on the real sample case."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.errors import InputError
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor, register_mode
from braintumorseg.registration import (FAILED_ALIGNMENT, GOOD_ALIGNMENT, RegistrationSettings, coarse, edge_alignment,
                                        rate, register_rigid)


@pytest.fixture(scope="module")
def small(sample) -> dict[str, sitk.Image]:
    """The sample case (co-registered, skull-stripped) at 2 mm: real images, a quarter of the voxels."""
    images = {}
    for modality in ("t1c", "t2", "flair"):
        image = sitk.ReadImage(str(sample[modality]), sitk.sitkFloat32)
        images[modality] = sitk.Shrink(sitk.SmoothingRecursiveGaussian(image, 1.0), [2, 2, 2])
    return images


def moved(image: sitk.Image, degrees: float, shift_mm: float) -> sitk.Image:
    """The image turned about its centre and shifted, resampled on its own grid (the head moved in the scanner)."""
    centre = image.TransformContinuousIndexToPhysicalPoint([s / 2 for s in image.GetSize()])
    motion = sitk.Euler3DTransform(centre, np.radians(degrees), 0.0, np.radians(degrees / 2), (shift_mm, 0.0, 0.0))
    return sitk.Resample(image, image, motion, sitk.sitkLinear, 0.0)


def test_a_coregistered_set_is_left_alone(small):
    ratings = Preprocessor(PreprocessSettings(bias_correction=False)).align(small)[4]
    assert [(r.modality, r.registered, r.rating) for r in ratings] == [("t2", False, "good"), ("flair", False, "good")]
    assert all(r.score >= GOOD_ALIGNMENT for r in ratings)


def test_a_moved_sequence_or_one_on_its_own_grid_is_registered(small):
    images = dict(small, t2=moved(small["t2"], 8.0, 5.0))
    grid = sitk.Image([70, 70, 40], sitk.sitkFloat32)
    grid.SetSpacing((2.5, 2.5, 3.5))
    grid.SetOrigin(small["flair"].GetOrigin())
    images["flair"] = sitk.Resample(moved(small["flair"], -5.0, 3.0), grid)  # moved, and on its own grid
    reference, arrays, _, transforms, ratings = Preprocessor(PreprocessSettings(bias_correction=False)).align(images)
    by_modality = {r.modality: r for r in ratings}
    assert by_modality["t2"].registered and by_modality["t2"].rating == "good"
    assert by_modality["flair"].registered and by_modality["flair"].rating == "good"
    inside = sitk.GetArrayFromImage(small["t2"]) > 0
    assert np.abs(arrays["t2"] - sitk.GetArrayFromImage(small["t2"]))[inside].mean() < \
        np.abs(sitk.GetArrayFromImage(images["t2"]) - sitk.GetArrayFromImage(small["t2"]))[inside].mean() / 2
    off = Preprocessor(PreprocessSettings(register="off")).align(images)
    assert off[3] == {} and off[4] == []
    # on its own grid but aligned: registered, and the scanner's geometry kept when registering does no better
    images["flair"] = sitk.Resample(small["flair"], grid)
    kept = {r.modality: r for r in Preprocessor(PreprocessSettings(bias_correction=False)).align(images)[4]}["flair"]
    assert kept.rating == "good" and kept.score >= GOOD_ALIGNMENT


def test_the_check_catches_a_broken_registration(small):
    t1c, t2 = small["t1c"], moved(small["t2"], 8.0, 5.0)
    good = register_rigid(t2, t1c)
    assert edge_alignment(t2, t1c, good) >= GOOD_ALIGNMENT
    assert edge_alignment(t2, t1c, good, coarse(t1c)) == edge_alignment(t2, t1c, good)  # the reference made once
    centre = t1c.TransformContinuousIndexToPhysicalPoint([s / 2 for s in t1c.GetSize()])
    broken = sitk.CompositeTransform([good, sitk.Euler3DTransform(centre, 0.35, 0.0, 0.35, (12.0, 0.0, 0.0))])
    score = edge_alignment(t2, t1c, broken)
    print("edge alignment good", round(edge_alignment(t2, t1c, good), 3), "broken", round(score, 3))
    assert rate("t2", True, score).rating == "failed" and score < FAILED_ALIGNMENT
    # a sequence that registration cannot bring back (turned upside down) is refused, naming it
    upside_down = sitk.Flip(small["t2"], [False, False, True], flipAboutOrigin=False)
    upside_down.CopyInformation(small["t2"])
    with pytest.raises(InputError, match=r"the T2 could not be aligned with the T1Gd .*segment without it"):
        Preprocessor(PreprocessSettings(register="on")).align({"t1c": t1c, "t2": upside_down})


def thick_reference(image: sitk.Image, slice_mm: float) -> sitk.Image:
    """The image as a series of `slice_mm` slices, 2 mm in plane, over the same extent."""
    grid = sitk.Image([120, 120, int(156 / slice_mm)], sitk.sitkFloat32)
    grid.SetSpacing((2.0, 2.0, slice_mm))
    grid.SetOrigin(image.GetOrigin())
    return sitk.Resample(sitk.SmoothingRecursiveGaussian(image, (0.1, 0.1, slice_mm / 2.4)), grid)


def test_a_thick_slice_reference_is_registered_on_the_working_grid(small):
    """Onto 6 mm slices (shrunk by 4 on its own grid: 24 mm apart) registration runs on 2 mm cubic voxels, and
    finds the motion; onto 4 mm slices (not thicker than twice 2 mm) on the own grids, as before."""
    t2 = moved(small["t2"], 6.0, 4.0)
    working = RegistrationSettings(working_spacing_mm=None, shrink_factors=(2, 1))
    own = RegistrationSettings(working_spacing_mm=None)
    thick, four = thick_reference(small["t1c"], 6.0), thick_reference(small["t1c"], 4.0)
    found = register_rigid(t2, thick)
    # the same path within what threads summing in any order change
    np.testing.assert_allclose(found.GetParameters(), register_rigid(coarse(t2, 2.0), coarse(thick, 2.0), working)
                               .GetParameters(), atol=0.01)
    np.testing.assert_allclose(register_rigid(t2, four).GetParameters(), register_rigid(t2, four, own).GetParameters(),
                               atol=0.01)
    centre = small["t2"].TransformContinuousIndexToPhysicalPoint([s / 2 for s in small["t2"].GetSize()])
    truth = sitk.Euler3DTransform(centre, np.radians(6.0), 0.0, np.radians(3.0), (4.0, 0.0, 0.0)).GetInverse()
    brain = np.argwhere(sitk.GetArrayFromImage(small["t2"])[::4, ::4, ::4] > 0)[:, ::-1] * 4
    points = [small["t2"].TransformIndexToPhysicalPoint([int(v) for v in p]) for p in brain]
    errors = {name: np.mean([np.linalg.norm(np.subtract(t.TransformPoint(p), truth.TransformPoint(p))) for p in points])
              for name, t in (("working grid", found), ("own grids", register_rigid(t2, thick, own)))}
    print("6 mm reference: registration error mean (mm)", {k: round(float(v), 2) for k, v in errors.items()})
    assert errors["working grid"] < 1.5 < errors["own grids"]  # measured 0.95 and 2.7 mm


def test_register_modes():
    assert [register_mode(v) for v in ("auto", "on", "off", True, False)] == ["auto", "on", "off", "on", "off"]
    with pytest.raises(InputError, match="unknown registration mode 'yes'; use auto, on, off"):
        Preprocessor(PreprocessSettings(register="yes"))
