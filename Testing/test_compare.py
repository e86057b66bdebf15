"""Two exams: the sample case's consensus label against itself, scaled by known factors about its lesion, with a
lesion added, with no enhancing tumour left, and moved by a known rigid transform (found again by registration)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.cli import main
from braintumorseg.compare import (COMPLETE, PARTIAL, PROGRESSION, STABLE, CompareSettings, Exam, compare_exams,
                                   comparison_lines, exam_from_report, load_exam)
from braintumorseg.errors import InputError
from braintumorseg.labels import ET, NCR
from braintumorseg.rano_results import RANO_2010

ALIGNED = CompareSettings(register=False)


@pytest.fixture(scope="module")
def baseline(sample) -> Exam:
    return load_exam(sample["label"], sample["t1c"], "brats2021", "baseline")


def lesion_centre(exam: Exam) -> np.ndarray:
    index = np.argwhere(exam.classes == ET).mean(axis=0)[::-1]
    return np.array(exam.labels.TransformContinuousIndexToPhysicalPoint(index.tolist()))


def scaled(exam: Exam, in_plane: float, through_plane: float = 1.0, classes: np.ndarray | None = None) -> Exam:
    """The same voxels with the spacing scaled about the lesion's centre: every in-plane length × in_plane, every
    volume × in_plane² × through_plane, the lesion in place (the grid's direction is the identity)."""
    factors = np.array([in_plane, in_plane, through_plane])
    centre, origin = lesion_centre(exam), np.array(exam.labels.GetOrigin())
    images = []
    for image in (sitk.GetImageFromArray(exam.classes if classes is None else classes), sitk.Image(exam.image)):
        image.SetSpacing((np.array(exam.labels.GetSpacing()) * factors).tolist())
        image.SetOrigin((centre - factors * (centre - origin)).tolist())
        image.SetDirection(exam.labels.GetDirection())
        images.append(image)
    return Exam(exam.classes if classes is None else classes, images[0], images[1], f"scaled {in_plane}")


def test_the_same_exam_is_stable_with_no_change(baseline):
    comparison = compare_exams(baseline, baseline, ALIGNED)
    assert comparison.sum_change_percent == 0.0 and comparison.enhancing_change_percent == 0.0
    assert comparison.non_enhancing_change_percent == 0.0
    assert comparison.bidimensional.category == comparison.volumetric.category == STABLE and comparison.agree
    assert [(m.baseline, m.follow_up, m.kind) for m in comparison.matches] == [([1], [1], "matched")]
    assert "Imaging measurements only" in comparison_lines(comparison)


@pytest.mark.parametrize("in_plane, through_plane, bidimensional, volumetric", [
    (0.6, 1.0, PARTIAL, STABLE),  # products −64 %, volume −64 %: the rules disagree
    (0.55, 0.9, PARTIAL, PARTIAL),  # products −69.75 %, volume −72.8 %
    (1.15, 1.0, PROGRESSION, STABLE),  # products +32.25 %, volume +32.25 %
    (1.2, 1.05, PROGRESSION, PROGRESSION),  # products +44 %, volume +51.2 %
    (0.9, 1.0, STABLE, STABLE),  # −19 %
])
def test_shrunk_and_grown_by_known_factors(baseline, in_plane, through_plane, bidimensional, volumetric):
    comparison = compare_exams(baseline, scaled(baseline, in_plane, through_plane), ALIGNED)
    area, volume = in_plane ** 2, in_plane ** 2 * through_plane
    assert comparison.sum_change_percent == pytest.approx(100 * (area - 1), abs=0.05)
    assert comparison.enhancing_change_percent == pytest.approx(100 * (volume - 1), abs=0.05)
    assert comparison.non_enhancing_change_percent == pytest.approx(100 * (volume - 1), abs=0.05)
    assert comparison.bidimensional.category == bidimensional
    assert comparison.volumetric.category == volumetric
    assert comparison.agree == (bidimensional == volumetric)
    if not comparison.agree:
        assert "both are shown" in comparison.summary()
        lines = comparison_lines(comparison)  # nothing entered: each rule's provisional response on its own line
        assert f"Response with the reader's findings, bidimensional rule: Provisional {bidimensional}" in lines
        assert f"Response with the reader's findings, volumetric rule: Provisional {volumetric}" in lines
    assert [m.kind for m in comparison.matches] == ["matched"]


def test_a_new_measurable_lesion_is_progression(baseline):
    """A 9 mm-radius enhancing sphere on the other side of the brain, in a follow-up shrunk by 0.6: the sum of
    products falls by 64 % but the new lesion makes it progression by both rules."""
    classes = baseline.classes.copy()
    centre = lesion_centre(baseline)
    mirrored = centre.copy()
    mirrored[0] = 2 * (baseline.labels.GetOrigin()[0] + 120) - centre[0]  # across the mid-sagittal plane
    z, y, x = np.meshgrid(*[np.arange(n) for n in classes.shape], indexing="ij")
    index = np.array(baseline.labels.TransformPhysicalPointToContinuousIndex(mirrored.tolist()))
    sphere = (x - index[0]) ** 2 + (y - index[1]) ** 2 + (z - index[2]) ** 2 <= 9.0 ** 2
    assert not np.isin(classes[sphere], (NCR, ET)).any()
    classes[sphere] = ET
    comparison = compare_exams(baseline, scaled(baseline, 0.6, classes=classes), ALIGNED)
    new = [m for m in comparison.matches if m.kind == "new"]
    assert len(new) == 1 and comparison.new_measurable == new[0].follow_up
    assert comparison.sum_change_percent == pytest.approx(-64.0, abs=0.05)  # the new lesion is not a target
    assert comparison.bidimensional.category == comparison.volumetric.category == PROGRESSION
    assert "new measurable lesion" in comparison.bidimensional.reason


def test_a_new_small_lesion_is_progression_by_rano_2010_only(baseline):
    """A 3 mm-radius enhancing sphere (not measurable): RANO 2.0 counts only new measurable lesions, 2010 any."""
    classes = baseline.classes.copy()
    z, y, x = np.meshgrid(*[np.arange(n) for n in classes.shape], indexing="ij")
    sphere = (x - 70) ** 2 + (y - 120) ** 2 + (z - 80) ** 2 <= 3.0 ** 2
    assert not np.isin(classes[sphere], (NCR, ET)).any()
    classes[sphere] = ET
    follow_up = scaled(baseline, 1.0, classes=classes)
    now = compare_exams(baseline, follow_up, ALIGNED)
    assert len(now.new_lesions) == 1 and now.new_measurable == [] and now.bidimensional.category == STABLE
    before = compare_exams(baseline, follow_up, CompareSettings(register=False, criteria=RANO_2010))
    assert before.bidimensional.category == before.volumetric.category == PROGRESSION
    assert "RANO 2010" in before.bidimensional.reason


def test_no_enhancing_disease_left_is_complete_response(baseline):
    classes = baseline.classes.copy()
    classes[classes == ET] = NCR
    comparison = compare_exams(baseline, scaled(baseline, 1.0, classes=classes), ALIGNED)
    assert comparison.bidimensional.category == comparison.volumetric.category == COMPLETE
    assert comparison.enhancing_change_percent == -100.0
    assert [m.kind for m in comparison.matches] == ["gone"]


def blob(shape, centres, radius) -> np.ndarray:
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.any([(x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= radius ** 2 for c in centres], axis=0)


def synthetic_exam(classes: np.ndarray) -> Exam:
    labels = sitk.GetImageFromArray(classes)
    image = sitk.GetImageFromArray(classes.astype(np.float32) + 1)
    return Exam(classes, labels, image, "synthetic")


def test_merged_and_split_lesions():
    shape = (30, 40, 70)
    two = np.zeros(shape, np.uint8)
    two[blob(shape, [(20, 20, 15), (50, 20, 15)], 8)] = ET
    one = two.copy()
    one[12:19, 17:24, 20:51] = ET  # a bridge joins them
    merged = compare_exams(synthetic_exam(two), synthetic_exam(one), ALIGNED)
    assert [(m.baseline, m.follow_up, m.kind) for m in merged.matches] == [([1, 2], [1], "merged")]
    split = compare_exams(synthetic_exam(one), synthetic_exam(two), ALIGNED)
    assert [(m.baseline, m.follow_up, m.kind) for m in split.matches] == [([1], [1, 2], "split")]
    assert split.follow_up_of_targets == [1, 2]  # both pieces of the split target are summed


def test_registration_matches_lesions_moved_by_a_rigid_transform(baseline):
    """The follow-up is the baseline moved by 4° about z and 65 mm (geometry only, no resampling): without
    registration its lesion is elsewhere (one gone, one new: progression); registered, it is the same lesion."""
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(0.0, 0.0, math.radians(4.0))
    direction = (np.array(rotation.GetMatrix()).reshape(3, 3) @ np.array(baseline.labels.GetDirection()).reshape(3, 3))
    moved = []
    for image in (sitk.Image(baseline.labels), sitk.Image(baseline.image)):
        image.SetDirection(direction.ravel().tolist())
        image.SetOrigin((np.array(image.GetOrigin()) + (50.0, -40.0, 10.0)).tolist())
        moved.append(image)
    follow_up = Exam(baseline.classes, moved[0], moved[1], "moved")
    unregistered = compare_exams(baseline, follow_up, ALIGNED)
    assert sorted(m.kind for m in unregistered.matches) == ["gone", "new"]
    assert unregistered.bidimensional.category == PROGRESSION
    registered = compare_exams(baseline, follow_up)
    assert [m.kind for m in registered.matches] == ["matched"]
    assert registered.sum_change_percent == 0.0 and registered.bidimensional.category == STABLE
    assert abs(abs(registered.registration["rotation_degrees"][2]) - 4.0) < 0.3


def test_bad_inputs_are_refused_in_one_sentence(sample, tmp_path, capsys):
    assert main(["compare", "--baseline", str(sample["label"]), "--follow-up", str(sample["label"])]) == 2
    assert "--baseline-image" in capsys.readouterr().err
    with pytest.raises(InputError, match="not on the grid"):
        small = sitk.Shrink(sitk.ReadImage(str(sample["t1c"])), [2, 2, 2])
        sitk.WriteImage(small, str(tmp_path / "small.nii.gz"))
        load_exam(sample["label"], tmp_path / "small.nii.gz")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(InputError, match="not a report"):
        exam_from_report(broken)
