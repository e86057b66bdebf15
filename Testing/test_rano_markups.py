"""RANO line markups and the lesion table on real MRML (slicer-core): drawn from the engine's measurements of the
sample case's consensus label, updated when the reader moves a line's end, kept in the scene, never overwritten
by a re-run without the reader's confirmation."""

from __future__ import annotations

import json

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from BrainTumorSegLib.logic import SegmentationLogic  # noqa: E402
from BrainTumorSegLib.rano_markups import (  # noqa: E402
    ENGINE_POINTS_ATTRIBUTE, READER_EDITED_ATTRIBUTE, SUM_ROW, TABLE_COLUMNS, TABLE_ROLE, line_points,
    lines_needing_confirmation, observe_lines, rano_lines, sum_of_products, update_table, write_rano)
from BrainTumorSegLib.runner import InProcessRunner  # noqa: E402
from braintumorseg.labels import ET  # noqa: E402
from braintumorseg.metrics import read_label_map  # noqa: E402
from braintumorseg.rano import measure_lesions  # noqa: E402
from braintumorseg.rano_results import RanoMeasurement, lesion_colour  # noqa: E402
from braintumorseg.settings import RunSettings  # noqa: E402
from slicer_scene import load_volume, new_scene  # noqa: E402


@pytest.fixture(scope="module")
def measurement(sample) -> RanoMeasurement:
    """The sample's consensus label with a second enhancing lesion added, so that two targets are drawn."""
    classes, image = read_label_map(sample["label"], "brats2021", "label")
    classes = classes.copy()
    classes[40:46, 150:164, 60:75] = ET  # 6 slices of 14 × 15 mm, away from the tumour
    return measure_lesions(classes, image)


@pytest.fixture
def scene_with_lines(measurement):
    scene = new_scene()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TCGA-FG-6692 tumor segmentation")
    table = write_rano(scene, segmentation, measurement.to_dict())
    return scene, segmentation, table


def table_rows(table) -> list[dict]:
    vtk_table = table.GetTable()
    return [{name: vtk_table.GetColumnByName(name).GetValue(row) for name in TABLE_COLUMNS}
            for row in range(vtk_table.GetNumberOfRows())]


def test_each_target_has_two_named_coloured_lines_on_its_slice(scene_with_lines, measurement):
    _, segmentation, table = scene_with_lines
    assert measurement.targets == [1, 2]
    lines = rano_lines(segmentation)
    assert sorted(line.GetName() for line in lines) == sorted(
        f"TCGA-FG-6692 tumor segmentation lesion {i} {d}" for i in (1, 2) for d in ("longest", "perpendicular"))
    for line in lines:
        lesion = measurement.lesions[int(line.GetName().split()[-2]) - 1]
        diameter = getattr(lesion, line.GetName().split()[-1])
        points = line_points(line)
        expected = np.array([[-p[0], -p[1], p[2]] for p in (diameter.start, diameter.end)])  # LPS → RAS
        np.testing.assert_allclose(points, expected, atol=1e-6)
        assert np.linalg.norm(points[1] - points[0]) == pytest.approx(diameter.length_mm, abs=0.01)
        assert points[0][2] == points[1][2] == pytest.approx(lesion.slice + 0.0)  # axial slice k at z = k (origin 0)
        colour = lesion_colour(lesion.id)
        assert line.GetDisplayNode().GetSelectedColor() == pytest.approx(
            tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)))
    rows = table_rows(table)
    assert [row["Lesion"] for row in rows] == ["1", "2", SUM_ROW]
    assert rows[0]["Longest (mm)"] == measurement.lesions[0].longest.length_mm
    assert sum_of_products(table) == pytest.approx(measurement.sum_of_products_mm2, abs=0.02)
    assert segmentation.GetNodeReference(TABLE_ROLE) is table


def test_moving_a_line_end_updates_the_table_and_marks_the_line(scene_with_lines, measurement):
    scene, segmentation, table = scene_with_lines
    observers = observe_lines(scene, segmentation)
    longest = next(line for line in rano_lines(segmentation) if line.GetName().endswith("lesion 1 longest"))
    start, end = line_points(longest)
    direction = (end - start) / np.linalg.norm(end - start)
    moved = end + 4.0 * direction  # the reader makes it 4 mm longer
    longest.SetNthControlPointPosition(1, *moved)
    rows = table_rows(table)
    lesion = measurement.lesions[0]
    assert rows[0]["Longest (mm)"] == pytest.approx(lesion.longest.length_mm + 4.0, abs=0.01)
    assert rows[0]["Product (mm2)"] == pytest.approx((lesion.longest.length_mm + 4.0) * lesion.perpendicular.length_mm,
                                                     abs=0.05)
    assert sum_of_products(table) == pytest.approx(rows[0]["Product (mm2)"] + rows[1]["Product (mm2)"], abs=0.02)
    assert "longest moved by the reader" in rows[0]["Note"]
    assert longest.GetAttribute(READER_EDITED_ATTRIBUTE) == "1"
    assert lines_needing_confirmation(segmentation) == [longest]
    for line, tag in observers:
        line.RemoveObserver(tag)


def test_a_rerun_keeps_moved_lines_unless_confirmed(scene_with_lines, measurement):
    scene, segmentation, table = scene_with_lines
    longest = next(line for line in rano_lines(segmentation) if line.GetName().endswith("lesion 1 longest"))
    perpendicular = next(line for line in rano_lines(segmentation) if line.GetName().endswith("lesion 1 perpendicular"))
    drawn = line_points(perpendicular)
    perpendicular.SetNthControlPointPosition(0, *(drawn[0] + (0.0, 0.0, 0.0)))  # touched, not moved
    moved = line_points(longest)[1] + (3.0, 0.0, 0.0)
    longest.SetNthControlPointPosition(1, *moved)
    table = write_rano(scene, segmentation, measurement.to_dict())  # re-run, not confirmed
    np.testing.assert_allclose(line_points(longest)[1], moved)
    assert lines_needing_confirmation(segmentation) == [longest]
    assert table_rows(table)[0]["Longest (mm)"] != measurement.lesions[0].longest.length_mm  # the reader's value
    write_rano(scene, segmentation, measurement.to_dict(), overwrite_edited=True)  # confirmed
    np.testing.assert_allclose(line_points(longest), json.loads(longest.GetAttribute(ENGINE_POINTS_ATTRIBUTE)))
    assert lines_needing_confirmation(segmentation) == []
    assert table_rows(table)[0]["Longest (mm)"] == measurement.lesions[0].longest.length_mm


def test_lines_of_a_lesion_gone_are_removed_unless_moved(scene_with_lines, measurement, sample):
    scene, segmentation, _ = scene_with_lines
    second = [line for line in rano_lines(segmentation) if " lesion 2 " in line.GetName()]
    moved = second[0]
    moved.SetNthControlPointPosition(0, *(line_points(moved)[0] + (0.0, 2.0, 0.0)))
    classes, image = read_label_map(sample["label"], "brats2021", "label")
    write_rano(scene, segmentation, measure_lesions(classes, image).to_dict())  # lesion 2 is gone
    names = [line.GetName() for line in rano_lines(segmentation)]
    assert moved.GetName() in names and second[1].GetName() not in names
    assert scene.GetNodeByID(second[1].GetID()) is None


def test_the_readers_correction_is_kept_with_the_scene(scene_with_lines, tmp_path):
    scene, segmentation, table = scene_with_lines
    longest = rano_lines(segmentation)[0]
    longest.SetNthControlPointPosition(1, *(line_points(longest)[1] + (0.0, 5.0, 0.0)))
    update_table(scene, segmentation)
    scene.SetURL(str(tmp_path / "scene.mrml"))
    scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    loaded.Import()
    node = loaded.GetNodeByID(longest.GetID())
    assert node.GetAttribute(READER_EDITED_ATTRIBUTE) == "1"
    assert node.GetAttribute(ENGINE_POINTS_ATTRIBUTE) == longest.GetAttribute(ENGINE_POINTS_ATTRIBUTE)
    reloaded = loaded.GetNodeByID(segmentation.GetID())
    assert reloaded.GetNodeReferenceID(TABLE_ROLE) == table.GetID()
    assert RanoMeasurement.from_dict(json.loads(reloaded.GetAttribute("BrainTumorSeg.Rano"))).targets == [1, 2]


def test_a_segmentation_run_brings_the_rano_table(tiny_card, synthetic):
    scene = new_scene()
    nodes = {m: load_volume(scene, synthetic[m], f"case {m}") for m in ("t1", "t1c", "t2", "flair")}
    result = SegmentationLogic(scene, InProcessRunner).segment(
        nodes, RunSettings(model=str(tiny_card.path), bias_correction=False))
    assert result.rano_table is not None
    assert result.segmentation.GetNodeReference(TABLE_ROLE) is result.rano_table
    rows = table_rows(result.rano_table)
    assert rows[-1]["Lesion"] == SUM_ROW
    assert len(rano_lines(result.segmentation)) == 2 * sum(row["Kind"] == "target" for row in rows)
