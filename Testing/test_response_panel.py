"""Two studies compared in the panel's logic on real MRML (slicer-core): the sample case's T1Gd with its consensus
label as baseline, and as follow-up the same label or one with a new enhancing lesion; the pair offered first,
the reader's moved lines and findings, edited segments, and the report."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from BrainTumorSegLib.rano_markups import RANO_ATTRIBUTE, line_points, rano_lines, write_rano  # noqa: E402
from BrainTumorSegLib.response import (compare_segmentations, default_pair, exam_of,  # noqa: E402
                                       findings_from_panel, problems, save_report)
from BrainTumorSegLib.segments import SEGMENT_IDS, write_segmentation  # noqa: E402
from braintumorseg.errors import InputError  # noqa: E402
from braintumorseg.labels import ET, SEGMENT_CONVENTION, from_internal  # noqa: E402
from braintumorseg.metrics import read_label_map  # noqa: E402
from braintumorseg.rano import measure_lesions  # noqa: E402
from braintumorseg.rano_response import NONE_OR_PHYSIOLOGICAL, NOT_ENTERED, ClinicalFindings  # noqa: E402
from braintumorseg.rano_results import PROGRESSION, STABLE  # noqa: E402
from slicer_scene import load_volume, new_scene  # noqa: E402

READER = ClinicalFindings(NONE_OR_PHYSIOLOGICAL, "stable", 30.0, NOT_ENTERED)


@pytest.fixture(scope="module")
def sample_classes(sample):
    return read_label_map(sample["label"], "brats2021", "label")


def add_study(scene, sample, classes, image, folder, name):
    """A study as the panel leaves it after a run: its T1Gd, the segmentation on it, the RANO lines."""
    t1c = load_volume(scene, sample["t1c"], f"{name} T1Gd")
    labels = sitk.GetImageFromArray(from_internal(classes, SEGMENT_CONVENTION).astype(np.uint8))
    labels.CopyInformation(image)
    path = folder / f"{name}-labels.nii.gz"
    sitk.WriteImage(labels, str(path))
    labelmap = load_volume(scene, path, f"{name} labels", label_map=True)
    segmentation = write_segmentation(scene, labelmap, t1c, name=f"{name} tumor segmentation")
    scene.RemoveNode(labelmap)
    write_rano(scene, segmentation, measure_lesions(classes, image).to_dict())
    return segmentation


@pytest.fixture
def studies(sample, sample_classes, tmp_path):
    classes, image = sample_classes
    grown = classes.copy()
    grown[40:46, 150:164, 60:75] = ET  # a new lesion of 6 slices, 14 × 15 mm, away from the tumour
    scene = new_scene()
    baseline = add_study(scene, sample, classes, image, tmp_path, "baseline")
    same = add_study(scene, sample, classes, image, tmp_path, "same")
    new_lesion = add_study(scene, sample, grown, image, tmp_path, "follow-up")
    return scene, baseline, same, new_lesion


def test_the_segments_are_read_back_as_the_engine_wrote_them(studies, sample_classes, tmp_path):
    _, baseline, _, _ = studies
    exam = exam_of(baseline, tmp_path, "baseline")
    assert np.array_equal(exam.classes, sample_classes[0])
    assert exam.name == "baseline tumor segmentation"


def test_the_same_study_is_stable_with_no_change(studies):
    _, baseline, same, _ = studies
    result = compare_segmentations(baseline, same, READER, register=False)
    comparison = result.comparison
    assert comparison.sum_change_percent == 0.0 and comparison.enhancing_change_percent == 0.0
    assert comparison.bidimensional.category == comparison.volumetric.category == STABLE
    assert comparison.responses["bidimensional"].category == STABLE
    assert not comparison.responses["bidimensional"].provisional
    assert "Response with the reader's findings (both rules): Stable disease." in result.text()
    result.reassess(ClinicalFindings(NONE_OR_PHYSIOLOGICAL, "worse"))
    assert "(both rules): Progressive disease (clinical deterioration" in result.text()


def test_a_new_lesion_is_progression_and_the_report_is_written(studies, tmp_path):
    _, baseline, _, follow_up = studies
    result = compare_segmentations(baseline, follow_up, READER, register=False)
    assert result.comparison.new_lesions and result.comparison.bidimensional.category == PROGRESSION
    report = save_report(result, tmp_path / "comparison.html")
    text = report.read_text()
    assert "RANO comparison: baseline tumor segmentation → follow-up tumor segmentation" in text
    assert "corticosteroids none or physiological" in text and text.count("data:image/png;base64,") >= 2
    with pytest.raises(InputError, match="HTML report"):
        save_report(result, tmp_path / "comparison.pdf")


def test_the_readers_moved_line_is_used_and_edited_segments_are_measured_again(studies):
    _, baseline, same, _ = studies
    longest = next(line for line in rano_lines(same) if line.GetName().endswith("lesion 1 longest"))
    start, end = line_points(longest)
    longest.SetNthControlPointPosition(1, *(start + 1.2 * (end - start)))  # the reader makes it 20 % longer
    result = compare_segmentations(baseline, same, READER, register=False)
    assert result.comparison.sum_change_percent == pytest.approx(20.0, abs=0.1)
    assert "The follow-up uses the reader's lines for lesion(s) 1." in result.notes
    segment = same.GetSegmentation().GetSegment(SEGMENT_IDS[3])
    segment.SetName("Enhancing tumor (edited)")  # any edit of the segments after the lines were drawn
    result = compare_segmentations(baseline, same, READER, register=False)
    assert result.comparison.sum_change_percent == 0.0
    assert "were measured again and the moved lines were not used" in result.notes[0]


def test_the_older_study_is_offered_as_baseline(studies):
    scene, baseline, same, follow_up = studies
    assert default_pair(scene) == (same, follow_up)  # by the order they were made, without study dates
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node, date in ((baseline, "20240105"), (same, "20240301"), (follow_up, "20230710")):
        study = hierarchy.CreateStudyItem(hierarchy.GetSceneItemID(), f"study {date}")
        hierarchy.SetItemAttribute(study, "DICOM.StudyDate", date)
        volume = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
        item = hierarchy.GetItemByDataNode(volume)  # the application makes items for new nodes; slicer-core not
        if item:
            hierarchy.SetItemParent(item, study)
        else:
            hierarchy.CreateItem(study, volume)
    assert default_pair(scene) == (baseline, same)


def test_one_segmentation_per_study_is_offered_and_a_comparison_knows_what_it_was_for(studies, sample, tmp_path):
    scene, baseline, same, follow_up = studies
    volume = follow_up.GetNodeReference(follow_up.GetReferenceImageGeometryReferenceRole())
    again = write_segmentation(scene, _labelmap(scene, follow_up), volume, name="re-run")
    again.SetAttribute(RANO_ATTRIBUTE, follow_up.GetAttribute(RANO_ATTRIBUTE))  # as a run writes it
    assert default_pair(scene) == (same, again)  # the re-run replaces the follow-up's older segmentation
    assert "were both made on 'follow-up T1Gd'" in problems(follow_up, again)[0]
    result = compare_segmentations(baseline, same, READER, register=False)
    assert result.is_for(baseline, same, "2.0")
    assert not result.is_for(baseline, follow_up, "2.0") and not result.is_for(baseline, same, "2010")
    assert save_report(result, tmp_path / "no-suffix").name == "no-suffix.html"


def _labelmap(scene, segmentation):
    """The segmentation's segments as a label map node (to make a second segmentation on the same volume)."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(segmentation, labelmap)
    return labelmap


def test_what_keeps_two_studies_from_being_compared_is_said(studies):
    scene, baseline, _, _ = studies
    assert problems(None, baseline) == ["Select the baseline and the follow-up segmentations (both made by "
                                        "BrainTumorSeg)."]
    assert problems(baseline, baseline) == ["The baseline and the follow-up are the same segmentation; select the "
                                            "other study's."]
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn by hand")
    assert problems(baseline, drawn) == ["The follow-up 'drawn by hand' was not made by BrainTumorSeg; segment "
                                         "that study first."]
    with pytest.raises(InputError, match="not made by BrainTumorSeg"):
        compare_segmentations(baseline, drawn, READER)
    assert findings_from_panel(NOT_ENTERED, NOT_ENTERED, -1.0, NOT_ENTERED).weeks_since_radiotherapy is None
    assert findings_from_panel("increased", "stable", 8.0, "confirmed") == ClinicalFindings("increased", "stable",
                                                                                             8.0, "confirmed")
