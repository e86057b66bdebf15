"""The Slicer module's logic on real MRML (slicer-core): segments, terminology, geometry, volumes, output rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
import vtk  # noqa: E402  (slicer-core brings it)

from BrainTumorSegLib.display import PROBABILITY_SHOWN_FROM, clear_probability_overlays, is_probability_map  # noqa: E402
from BrainTumorSegLib.logic import SegmentationFailed, SegmentationLogic, input_problems, node_ids  # noqa: E402
from BrainTumorSegLib.runner import InProcessRunner  # noqa: E402
from BrainTumorSegLib.segments import (  # noqa: E402
    CONTENT_HASH_ATTRIBUTE, SEGMENT_IDS, TERMINOLOGY_CONTEXT, content_hash, get_terminology, needs_confirmation)
from braintumorseg.labels import SEGMENTS, VOLUMES  # noqa: E402
from braintumorseg.modalities import MODALITIES  # noqa: E402
from braintumorseg.settings import RunSettings  # noqa: E402
from slicer_scene import load_volume, new_scene, volumes_from_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TERMINOLOGY_FILE = ROOT / "BrainTumorSeg/Resources/Terminology/SegmentationCategoryTypeModifier-BrainTumorSeg.term.json"


def options(card, **changes) -> RunSettings:
    return RunSettings(model=str(card.path), bias_correction=False, **changes)


def load_sample(scene, sample) -> dict:
    return {m: load_volume(scene, sample[m], f"TCGA-FG-6692 {m}") for m in MODALITIES}


def exported_labels(segmentation, reference) -> tuple[np.ndarray, np.ndarray]:
    """The segmentation as a label map on the reference grid (values 1, 2, 3 in SEGMENTS order): voxels and
    IJK-to-RAS matrix."""
    ids = vtk.vtkStringArray()
    for segment in SEGMENTS:
        ids.InsertNextValue(SEGMENT_IDS[segment.label])
    scene = segmentation.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap,
                                                                                     reference)
        return array_of(labelmap).copy(), ijk_to_ras(labelmap)
    finally:
        scene.RemoveNode(labelmap)


def array_of(node) -> np.ndarray:
    from vtk.util import numpy_support
    image = node.GetImageData()
    dims = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


@pytest.fixture(scope="module")
def run(sample, tiny_card):
    """One synchronous in-process run on the bundled sample case."""
    scene = new_scene()
    nodes = load_sample(scene, sample)
    result = SegmentationLogic(scene, InProcessRunner).segment(nodes, options(tiny_card))
    return scene, nodes, result


def test_segments_are_named_coloured_and_coded(run):
    _, _, result = run
    segmentation = result.segmentation.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == [
        "Necrotic tumor core", "Peritumoral edema", "Enhancing tumor"]
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    assert terminologies.LoadTerminologyFromFile(str(TERMINOLOGY_FILE)) == TERMINOLOGY_CONTEXT
    for segment in SEGMENTS:
        stored = segmentation.GetSegment(SEGMENT_IDS[segment.label])
        assert np.allclose(stored.GetColor(), segment.color)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert terminologies.DeserializeTerminologyEntry(get_terminology(stored), entry)
        assert entry.GetTerminologyContextName() == TERMINOLOGY_CONTEXT
        assert (entry.GetCategoryObject().GetCodeValue(), entry.GetTypeObject().GetCodeValue()) == (
            segment.category[1], segment.type[1])
        # The shipped terminology file knows this type, under the segment's name and with its colour.
        listed = slicer.vtkSlicerTerminologyEntry()
        assert terminologies.FindTypeInTerminologyBy3dSlicerLabel(TERMINOLOGY_CONTEXT, segment.name, listed)
        assert listed.GetTypeObject().GetCodeValue() == segment.type[1]
        assert listed.GetTypeObject().GetCodingSchemeDesignator() == "SCT"
        assert np.allclose(np.array(listed.GetTypeObject().GetRecommendedDisplayRGBValue()) / 255, segment.color,
                           atol=0.003)


def test_reference_geometry_and_volumes_table(run):
    scene, nodes, result = run
    reference = nodes["t1c"]
    geometry = result.segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
    labels, matrix = exported_labels(result.segmentation, reference)
    assert np.allclose(matrix, ijk_to_ras(reference))
    assert geometry, "segmentation has no reference image geometry"
    voxel_ml = float(np.prod(reference.GetSpacing())) / 1000
    counted = {volume.key: 0.0 for volume in VOLUMES}
    for position, key in enumerate(("necrotic_core", "edema", "enhancing"), start=1):
        counted[key] = np.count_nonzero(labels == position) * voxel_ml
    counted["tumour_core"] = counted["necrotic_core"] + counted["enhancing"]
    counted["whole_tumour"] = counted["tumour_core"] + counted["edema"]
    assert counted["whole_tumour"] > 0, "the tiny model found nothing: the test cannot check volumes"
    table = volumes_from_table(result.table)
    assert list(table) == [volume.title for volume in VOLUMES]
    for volume in VOLUMES:
        assert table[volume.title] == pytest.approx(counted[volume.key], abs=0.002)
        assert result.volumes_ml[volume.key] == pytest.approx(counted[volume.key], abs=0.002)
    assert result.segmentation.GetNodeReference("BrainTumorSeg.VolumesTable") is result.table
    assert result.probability is None  # not asked for: no probability volume
    assert not any("probability" in scene.GetNthNode(i).GetName().lower() for i in range(scene.GetNumberOfNodes()))


def test_label_map_equals_command_line_output_in_ras(run, sample, tiny_card, tmp_path):
    _, nodes, result = run
    output = tmp_path / "cli.nii.gz"
    command = [sys.executable, "-m", "braintumorseg.cli", "segment", "--output", str(output),
               "--model", str(tiny_card.path), "--no-bias-correction"]
    for modality in MODALITIES:
        command += [f"--{modality}", str(sample[modality])]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "BrainTumorSeg")})
    assert done.returncode == 0, done.stderr
    cli = sitk.ReadImage(str(output))
    cli_array = sitk.GetArrayFromImage(cli)
    expected = np.zeros_like(cli_array)
    for position, value in enumerate((1, 2, 4), start=1):
        expected[cli_array == value] = position
    ours, matrix = exported_labels(result.segmentation, nodes["t1c"])
    assert ours.shape == expected.shape
    assert np.array_equal(ours, expected)
    # Independent of matrices being copied: every labelled CLI voxel, taken to RAS, lands on the same label.
    ras_to_ijk = np.linalg.inv(matrix)
    indices = np.argwhere(cli_array > 0)
    rng = np.random.default_rng(0)
    for z, y, x in indices[rng.choice(len(indices), size=min(200, len(indices)), replace=False)]:
        lps = cli.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
        i, j, k = np.round(ras_to_ijk @ ras)[:3].astype(int)
        assert ours[k, j, i] == expected[z, y, x]


def test_other_grid_and_subject_hierarchy_study(sample, tiny_card, tmp_path):
    scene = new_scene()
    t2 = sitk.ReadImage(str(sample["t2"]))
    coarse = sitk.Resample(t2, [120, 120, 78], sitk.Transform(), sitk.sitkLinear,
                           np.array(t2.GetOrigin()) + 0.5, (2.0, 2.0, 2.0), t2.GetDirection(), 0.0, t2.GetPixelID())
    sitk.WriteImage(coarse, str(tmp_path / "t2_coarse.nrrd"))
    nodes = {"t1c": load_volume(scene, sample["t1c"], "case T1Gd"),
             "t2": load_volume(scene, tmp_path / "t2_coarse.nrrd", "case T2 coarse")}
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Study")
    for node in nodes.values():
        hierarchy.CreateItem(study, node)
    result = SegmentationLogic(scene, InProcessRunner).segment(nodes, options(tiny_card), probability_map=True)
    labels, matrix = exported_labels(result.segmentation, nodes["t1c"])
    assert np.allclose(matrix, ijk_to_ras(nodes["t1c"]))
    for node in (result.segmentation, result.table, result.probability):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study
    # The probability map: a new volume on the reference grid, holding every voxel labelled tumour at >= 50 %.
    probability = result.probability
    assert probability.GetScene() is scene and probability.GetName() == "case T1Gd tumor probability (%)"
    assert np.allclose(ijk_to_ras(probability), ijk_to_ras(nodes["t1c"]))
    percent = array_of(probability)
    assert percent.shape == labels.shape and percent.max() <= 100 and (percent[labels > 0] >= 50).all()
    display = probability.GetDisplayNode()
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == PROBABILITY_SHOWN_FROM
    assert (display.GetWindow(), display.GetLevel()) == (100.0, 50.0)


def test_only_an_earlier_probability_map_is_taken_off_the_slice_views(sample, tiny_card):
    scene = new_scene()
    nodes = {"t1c": load_volume(scene, sample["t1c"], "case T1Gd")}
    probability = SegmentationLogic(scene, InProcessRunner).segment(
        nodes, options(tiny_card), probability_map=True).probability
    assert is_probability_map(probability) and not is_probability_map(nodes["t1c"])
    views = [scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    views[0].SetForegroundVolumeID(probability.GetID())
    views[1].SetForegroundVolumeID(nodes["t1c"].GetID())  # the user's own overlay
    clear_probability_overlays(scene)
    assert [v.GetForegroundVolumeID() for v in views] == [None, nodes["t1c"].GetID(), None]


def test_a_result_that_cannot_be_brought_in_leaves_the_scene_as_it_was(sample, tiny_card):
    scene = new_scene()
    nodes = {"t1c": load_volume(scene, sample["t1c"], "case T1Gd")}
    before = node_ids(scene)
    logic = SegmentationLogic(scene, InProcessRunner)
    job = logic.start(nodes, options(tiny_card), probability_map=True)
    job.runner.wait()
    job.request.probability.write_bytes(b"not an image")  # an unreadable map: the user is told, nothing added
    with pytest.raises(SegmentationFailed, match="The segmentation failed: the probability map .* could not be read"):
        logic.finish(job)
    assert node_ids(scene) == before
    job = logic.start(nodes, options(tiny_card), probability_map=True)
    job.runner.wait()
    report = json.loads(job.request.report.read_text())
    del report["volumes_ml"]  # fails after the segmentation is in the scene: it is taken out again
    job.request.report.write_text(json.dumps(report))
    with pytest.raises(KeyError):
        logic.finish(job)
    assert node_ids(scene) == before


def edit_one_voxel(segmentation_node) -> None:
    """What a user's paint stroke does: change a segment's binary labelmap."""
    segment_id = SEGMENT_IDS[SEGMENTS[0].label]
    image = slicer.vtkOrientedImageData()
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.GetSegmentBinaryLabelmapRepresentation(segmentation_node, segment_id, image)
    if image.GetPointData().GetScalars() is None or image.GetNumberOfPoints() == 0:
        geometry_source = segmentation_node.GetSegmentation().GetSegment(SEGMENT_IDS[SEGMENTS[1].label])
        image.DeepCopy(geometry_source.GetRepresentation("Binary labelmap"))
        image.GetPointData().GetScalars().Fill(0)
    extent = image.GetExtent()
    image.SetScalarComponentFromDouble((extent[0] + extent[1]) // 2, (extent[2] + extent[3]) // 2,
                                       (extent[4] + extent[5]) // 2, 0, 1)
    logic.SetBinaryLabelmapToSegment(image, segmentation_node, segment_id, logic.MODE_REPLACE)


def test_edited_segmentation_is_replaced_only_when_chosen_and_confirmed(sample, tiny_card):
    scene = new_scene()
    nodes = load_sample(scene, {m: sample[m] for m in MODALITIES})
    logic = SegmentationLogic(scene, InProcessRunner)
    first = logic.segment(nodes, options(tiny_card)).segmentation
    assert not needs_confirmation(first)
    count = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    # Unedited and chosen: rewritten in place.
    assert logic.segment(nodes, options(tiny_card), output=first).segmentation is first
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count
    edit_one_voxel(first)
    edited = content_hash(first)
    assert edited != first.GetAttribute(CONTENT_HASH_ATTRIBUTE)
    assert needs_confirmation(first)
    # Edited, chosen, not confirmed: a new node; the edit survives.
    second = logic.segment(nodes, options(tiny_card), output=first).segmentation
    assert second is not first and content_hash(first) == edited
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count + 1
    # Edited, not chosen: a new node too.
    third = logic.segment(nodes, options(tiny_card)).segmentation
    assert third not in (first, second) and content_hash(first) == edited
    # Edited, chosen and confirmed: replaced.
    assert logic.segment(nodes, options(tiny_card), output=first, replace_confirmed=True).segmentation is first
    assert content_hash(first) == first.GetAttribute(CONTENT_HASH_ATTRIBUTE) != edited
    # A segmentation the user made by hand counts as work to protect.
    manual = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my outline")
    manual.GetSegmentation().AddEmptySegment("outline")
    assert needs_confirmation(manual)
    assert logic.segment(nodes, options(tiny_card), output=manual).segmentation is not manual
    assert manual.GetSegmentation().GetNumberOfSegments() == 1


def test_input_problems_are_plain_sentences(sample, tmp_path):
    scene = new_scene()
    t1 = load_volume(scene, sample["t1"], "t1")
    flair = load_volume(scene, sample["flair"], "flair")
    assert input_problems({}) == ["Select at least one MRI volume: T1, T1Gd, T2 or FLAIR."]
    assert input_problems({"t1": t1, "flair": flair}) == []
    assert "same volume is selected for T1 and T2" in input_problems({"t1": t1, "t2": t1})[0]
    far = load_volume(scene, sample["t2"], "far away")
    far.SetOrigin(500.0, 500.0, 500.0)
    problem = input_problems({"t1": t1, "t2": far})
    assert len(problem) == 1 and "does not overlap" in problem[0] and "'far away'" in problem[0]
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    flair.SetAndObserveTransformNodeID(transform.GetID())
    assert "harden the transform" in input_problems({"flair": flair})[0]
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "holds no image" in input_problems({"t1c": empty})[0]
