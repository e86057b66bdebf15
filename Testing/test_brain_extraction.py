"""Skull stripping: the brain template and deepbet on real brains that still have a head around them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.benchmark import skull_stripping
from braintumorseg.brain_extraction import AtlasBrainExtractor, BrainExtractionSettings
from braintumorseg.cli import main
from braintumorseg.errors import InputError
from braintumorseg.labels import to_internal
from braintumorseg.metrics import dice, read_label_map, region_scores
from braintumorseg.modalities import MODALITIES
from braintumorseg.modelcard import ModelCard
from braintumorseg.pipeline import Pipeline, SegmentationSettings
from braintumorseg.preprocessing import NOT_SKULL_STRIPPED, PreprocessSettings, Preprocessor, foreground_mask
from braintumorseg.resources import default_model_card
from training.brain_extraction_benchmark import raw_exam_case, sample_head_case
from training.native_exam import RAW_EXAM

TEMPLATE = PreprocessSettings(bias_correction=False, brain_extraction=BrainExtractionSettings(method="template"))


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict:
    """The sample case with a head, turned 13° and moved, on a 1.2 mm grid: files, brain and label on that grid."""
    case = sample_head_case()
    folder = tmp_path_factory.mktemp("heads")
    files = {}
    for modality, array in case["arrays"].items():
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(case["grid"])
        files[modality] = folder / f"{modality}.nii.gz"
        sitk.WriteImage(image, str(files[modality]))
    files["label"] = folder / "label.nii.gz"
    sitk.WriteImage(case["label"], str(files["label"]))
    return {"files": files, "brain": case["brain"]}


def test_template_finds_the_brain_inside_a_head(heads):
    t1 = sitk.ReadImage(str(heads["files"]["t1"]))
    preprocessor = Preprocessor(TEMPLATE)
    arrays = {"t1": sitk.GetArrayFromImage(t1)}
    off = Preprocessor(PreprocessSettings(skull_strip="off")).brain_mask(t1, arrays)
    mask, warnings = preprocessor.brain_mask(t1, arrays)
    assert off[1] == [NOT_SKULL_STRIPPED] and dice(off[0], heads["brain"]) < 0.7
    score = dice(mask, heads["brain"])
    print("brain Dice", round(score, 3), "mask mL", mask.sum() * 1.728 / 1000,
          "truth", heads["brain"].sum() * 1.728 / 1000)
    assert score >= 0.93
    assert len(warnings) == 1 and "stripped by registering a brain template (MNI ICBM152) on the T1" in warnings[0]


def test_skull_stripped_inputs_are_left_alone(sample):
    t1 = sitk.ReadImage(str(sample["t1"]))
    arrays = {"t1": sitk.GetArrayFromImage(t1)}
    foreground = foreground_mask(arrays)
    auto_mask, auto_warnings = Preprocessor().brain_mask(t1, arrays)
    np.testing.assert_array_equal(auto_mask, foreground)
    assert auto_warnings == []
    for method in ("template", "deepbet"):
        settings = PreprocessSettings(skull_strip="on", brain_extraction=BrainExtractionSettings(method=method))
        forced, forced_warnings = Preprocessor(settings).brain_mask(t1, arrays)
        assert forced_warnings == [] and not (forced & ~foreground).any()
        assert dice(forced, foreground) >= 0.97, f"{method} with its margin must cover a stripped brain"
    measured = skull_stripping("t1")  # the benchmark's numbers: the template's brain alone against the sample's
    print(measured)
    assert measured["dice_against_sample_mask"] >= 0.93 and measured["seconds"] > 0


def test_skull_stripping_refuses_what_it_cannot_do(tmp_path):
    with pytest.raises(InputError, match="unknown skull stripping 'yes'; use auto, on, off"):
        Preprocessor(PreprocessSettings(skull_strip="yes"))
    with pytest.raises(InputError, match="brain template for skull stripping is missing"):
        AtlasBrainExtractor(template_path=tmp_path / "missing.nii.gz")
    ball = np.zeros((48, 48, 48), np.float32)
    z, y, x = np.ogrid[-24:24, -24:24, -24:24]
    ball[z ** 2 + y ** 2 + x ** 2 < 15 ** 2] = 300.0
    with pytest.raises(InputError, match="skull stripping failed: the brain template landed on .* mL, not a brain"):
        AtlasBrainExtractor().mask(sitk.GetImageFromArray(ball))  # a 14 mL object at 1 mm: no brain fits


def test_segmenting_a_head_strips_its_skull(heads, tmp_path, capsys):
    """The command line's defaults on a turned head: the skull is stripped, and the case goes to the scanner-native
    model (the floors held for 1.8.0 as well)."""
    files = heads["files"]
    output = tmp_path / "labels.nii.gz"
    args = [a for m in MODALITIES for a in (f"--{m}", str(files[m]))]
    assert main(["segment", *args, "-o", str(output), "--no-tta"]) == 0
    printed = capsys.readouterr().err
    assert "stripped by registering a brain template" in printed and "Model: brats-segresnet-native" in printed
    predicted, image = read_label_map(output, "brats2021", "prediction")
    reference, _ = read_label_map(files["label"], "brats2021", "reference")
    scores = region_scores(predicted, reference, image.GetSpacing()[::-1])
    print({r: round(s["dice"], 3) for r, s in scores.items()})
    assert scores["WT"]["dice"] >= 0.80 and scores["TC"]["dice"] >= 0.80


@pytest.mark.skipif(not RAW_EXAM.is_dir(), reason=f"real data absent: {RAW_EXAM} (see ../shared/data/PROVENANCE.md)")
def test_scanner_native_case_is_segmented_after_skull_stripping():
    """The sample patient as acquired (skull on, 5.5 mm slices, series not aligned) against its consensus label."""
    case = raw_exam_case()  # the benchmark's case: the copy's brain and label carried back onto the exam
    settings = SegmentationSettings(PreprocessSettings(register="on"))
    brain = Preprocessor(settings.preprocess).brain_mask(case["grid"], case["arrays"])[0]
    brain_dice = dice(brain, case["brain"])
    labels, report = Pipeline(ModelCard.load(default_model_card()), settings).segment_images(case["images"])
    scores = region_scores(*(to_internal(sitk.GetArrayFromImage(i).astype(np.int64), "brats2021")
                             for i in (labels, case["label"])), labels.GetSpacing()[::-1])
    print("brain Dice", round(brain_dice, 3), {r: round(s["dice"], 3) for r, s in scores.items()}, report.stage_seconds)
    assert brain_dice >= 0.9, "against the skull stripping BraTS-Toolkit did for this patient"
    assert any("stripped by registering a brain template" in w for w in report.warnings)
    assert not any("look swapped" in w or "mixed up" in w for w in report.warnings), "the sequences are right"
    assert scores["WT"]["dice"] >= 0.65 and scores["TC"]["dice"] >= 0.75 and scores["ET"]["dice"] >= 0.75
