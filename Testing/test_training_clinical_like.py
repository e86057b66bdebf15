"""The clinical-like exam generator on a tiny phantom: seeded, own grids, thick slices, label through the pose."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from training.clinical_like import ExamSettings, generate, make_exam
from training_synthetic import brats_case, phantom

# Coarse grids keep the test fast; the angles are the defaults' upper ends so a missed pose shows.
COARSE = ExamSettings(head_rotation_deg=20.0, in_plane_mm=(2.5, 3.0), t1c_spacing_mm=(2.0, 2.5),
                      slice_thickness_mm=(5.0, 6.0), fov_margin_mm=(4.0, 8.0))


def _case():
    arrays, classes = phantom(shape=(44, 52, 48))
    images = {}
    for modality, array in arrays.items():
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((2.0, 2.0, 2.0))
        image.SetOrigin((-48.0, -52.0, -44.0))
        images[modality] = image
    label = sitk.GetImageFromArray(np.select([classes == 1, classes == 2, classes == 3], [1, 2, 4], 0)
                                   .astype(np.uint8))
    label.CopyInformation(images["t1"])
    return images, label


@pytest.fixture(scope="module")
def exam():
    images, label = _case()
    return images, label, make_exam(images, label, "case", 3, COARSE)


def test_same_seed_same_exam_and_another_seed_another(exam):
    images, label, (series, reference, record) = exam
    again, reference_again, _ = make_exam(images, label, "case", 3, COARSE)
    other, _, other_record = make_exam(images, label, "case", 4, COARSE)
    for modality in series:
        assert np.array_equal(sitk.GetArrayFromImage(series[modality]), sitk.GetArrayFromImage(again[modality]))
    assert np.array_equal(sitk.GetArrayFromImage(reference), sitk.GetArrayFromImage(reference_again))
    assert other_record.head_rotation_deg != record.head_rotation_deg
    assert other["t1c"].GetSize() != series["t1c"].GetSize() or other["t1c"].GetOrigin() != series["t1c"].GetOrigin()


def test_each_series_on_its_own_grid_2d_ones_thick_integer_and_scaled(exam):
    _, _, (series, _, record) = exam
    t1c = series["t1c"]
    for modality in ("t1", "t2", "flair"):
        image, drawn = series[modality], record.series[modality]
        assert image.GetPixelID() == sitk.sitkInt16
        assert 5.0 <= image.GetSpacing()[2] <= 7.0 and drawn.slice_thickness_mm >= 5.0
        assert image.GetDirection() != t1c.GetDirection() and image.GetOrigin() != t1c.GetOrigin()
        assert 1.0 <= drawn.motion_rotation_deg <= 3.0 and 1.0 <= drawn.motion_translation_mm <= 3.0
        peak = np.percentile(sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(image) > 0], 99.5)
        assert abs(peak - drawn.peak) < 0.05 * drawn.peak
    assert max(t1c.GetSpacing()) <= 2.5 and record.series["t1c"].motion_rotation_deg == 0.0
    assert max(abs(a) for a in record.head_rotation_deg) > 5.0


def test_label_on_the_t1gd_grid_follows_the_head_pose(exam):
    images, label, (series, reference, _) = exam
    assert reference.GetSize() == series["t1c"].GetSize() and reference.GetOrigin() == series["t1c"].GetOrigin()
    source = sitk.GetArrayFromImage(label)
    moved = sitk.GetArrayFromImage(reference)
    volume = lambda array, image: np.count_nonzero(array) * np.prod(image.GetSpacing())  # noqa: E731
    assert volume(moved, reference) == pytest.approx(volume(source, label), rel=0.15)
    t1c = sitk.GetArrayFromImage(series["t1c"]).astype(float)
    brain = t1c > 0

    def enhancing_contrast(classes: np.ndarray) -> float:
        return t1c[classes == 4].mean() / t1c[brain & (classes == 0)].mean()

    # The enhancing ring is twice as bright on the phantom's T1Gd: the label must land on it, and the same
    # label carried without the head's pose must not.
    unposed = sitk.GetArrayFromImage(sitk.Resample(label, series["t1c"], sitk.Transform(), sitk.sitkNearestNeighbor))
    assert enhancing_contrast(moved) > 1.5
    assert enhancing_contrast(unposed) < enhancing_contrast(moved) - 0.2


def test_generate_writes_brats_named_exams(tmp_path):
    brats_case(tmp_path / "src", "Brats18_X_1")
    folders = generate([tmp_path / "src"], tmp_path / "out", 0, settings=COARSE, log=lambda line: None)
    names = sorted(p.name for p in folders[0].iterdir())
    assert names == ["Brats18_X_1_flair.nii.gz", "Brats18_X_1_seg.nii.gz", "Brats18_X_1_t1.nii.gz",
                     "Brats18_X_1_t1ce.nii.gz", "Brats18_X_1_t2.nii.gz", "exam.json"]
    assert json.loads((folders[0] / "exam.json").read_text())["seed"] == 0


def test_a_step_switched_off_changes_only_that_step(exam):
    """`--without bias`: the same grids, pose and label as with all steps; the intensities without the field."""
    from training.cli import _parser
    from training.clinical_like import settings_without
    from training.exam_steps import STEPS_OFF
    images, label, (series, reference, record) = exam
    plain, reference_plain, record_plain = make_exam(images, label, "case", 3, settings_without(("bias",), COARSE))
    assert record_plain.head_rotation_deg == record.head_rotation_deg
    assert np.array_equal(sitk.GetArrayFromImage(reference), sitk.GetArrayFromImage(reference_plain))
    for modality in series:
        assert series[modality].GetSize() == plain[modality].GetSize()
    assert not np.array_equal(sitk.GetArrayFromImage(series["t2"]), sitk.GetArrayFromImage(plain["t2"]))
    posed = settings_without(("pose", "thick"))
    assert posed.head_rotation_deg == 0.0 and posed.slice_thickness_mm == (1.0, 1.0)
    assert posed.bias_coefficient == ExamSettings().bias_coefficient
    parsed = _parser().parse_args(["clinical-like", "cases", "--out", "exams", "--without", *STEPS_OFF])
    assert parsed.without == list(STEPS_OFF)


def test_a_skull_and_a_thick_t1gd_change_only_what_they_name(exam):
    """`--with skull thick-t1c`: every series gets a head reaching its field of view's edge, and the T1Gd is a 2D
    thick-slice series; the other series keep their grids and pose, and the label stays on the T1Gd's grid."""
    from training.clinical_like import settings_without
    images, label, (series, reference, record) = exam
    harder, reference_harder, record_harder = make_exam(images, label, "case", 3,
                                                        settings_without((), COARSE, ("skull", "thick-t1c")))
    assert record_harder.extras == ["skull", "thick-t1c"] and record.extras == []
    assert record_harder.head_rotation_deg == record.head_rotation_deg
    for modality in ("t1", "t2", "flair"):
        assert harder[modality].GetSize() == series[modality].GetSize()
        assert harder[modality].GetOrigin() == series[modality].GetOrigin()
    t1c, drawn = harder["t1c"], record_harder.series["t1c"]
    assert 5.0 <= t1c.GetSpacing()[2] <= 7.0 and drawn.slice_thickness_mm >= 5.0 and drawn.motion_rotation_deg == 0.0
    assert reference_harder.GetSize() == t1c.GetSize() and reference_harder.GetSpacing() == t1c.GetSpacing()
    assert np.count_nonzero(sitk.GetArrayFromImage(reference_harder)) > 0
    for modality, image in harder.items():
        plain = sitk.GetArrayFromImage(series[modality]) if modality != "t1c" else None
        array = sitk.GetArrayFromImage(image)
        faces = np.concatenate([array[0].ravel(), array[-1].ravel(), array[:, 0].ravel(), array[:, -1].ravel()])
        assert np.mean(faces > 0) > 0.5, f"{modality}: the head's noisy air must reach the edge"
        if plain is not None:
            assert np.count_nonzero(array) > 1.5 * np.count_nonzero(plain)


def test_the_t2_head_has_bright_csf_and_the_t1_head_dark():
    from training.clinical_like import HEAD_SHELLS, distance_outside, with_head
    brain = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    brain[10:30, 10:30, 10:30] = 1
    image = sitk.Cast(brain, sitk.sitkFloat32) * 100.0
    distance = distance_outside(brain)
    rim = (distance > 0) & (distance <= 3)
    for modality, bright in (("t1", False), ("t2", True)):
        head = sitk.GetArrayFromImage(with_head(image, distance, HEAD_SHELLS[modality], np.random.default_rng(0)))
        assert (head[rim].mean() > 100.0) == bright
        assert head[(distance > 8) & (distance <= 14)].mean() > 100.0  # the scalp's fat
        assert 0 < head[distance > 14].mean() < 10.0  # noisy air


def test_exams_of_other_settings_go_to_their_own_folder():
    from training.cli import _parser
    from training.exam_steps import STEPS_ON, exams_folder_name
    assert exams_folder_name(0) == "clinical-like-0"
    assert exams_folder_name(0, ("thick-t1c", "skull")) == "clinical-like-0-skull-thick-t1c"
    parsed = _parser().parse_args(["clinical-like", "cases", "--out", "exams", "--with", *STEPS_ON])
    assert parsed.extras == list(STEPS_ON)
    parsed = _parser().parse_args(["evaluate", "cases", "--model", "m.json", "--out", "o", "--clinical-like", "0",
                                   "--clinical-like-with", "skull"])
    assert parsed.clinical_like_with == ["skull"]
    assert exams_folder_name(0, ("skull", "skull")) == "clinical-like-0-skull", "a repeated option is one option"


def test_harder_exams_without_a_seed_are_one_sentence(tmp_path, capsys):
    from training.cli import main
    assert main(["evaluate", str(tmp_path), "--model", "m.json", "--out", str(tmp_path / "o"),
                 "--clinical-like-with", "skull"]) != 0
    assert "give --clinical-like SEED too" in capsys.readouterr().err
