"""RANO measurements in the scene, without Qt: each target lesion's two diameters as line markups on the slice
where they were measured (named and coloured by lesion), a table of the lesions and the sum of products
recomputed from the lines, so that the reader's correction wins and is saved with the scene.

Everything is kept on MRML nodes: the engine's measurements as JSON on the segmentation node, the points the
engine drew on each line node; a line whose points differ from them was moved by the reader and is marked so.
Re-running never overwrites such a line unless the caller says the reader confirmed it
(`lines_needing_confirmation` lists them before a run).
"""

from __future__ import annotations

import json
import math

import numpy as np
import slicer
import vtk

from braintumorseg.rano_results import RanoMeasurement, lesion_colour

from .display import referenced_table

RANO_ATTRIBUTE = "BrainTumorSeg.Rano"  # on the segmentation node: the engine's measurements (JSON)
LINE_ROLE = "BrainTumorSeg.RanoLine"  # segmentation node → its line nodes
TABLE_ROLE = "BrainTumorSeg.RanoTable"  # segmentation node → the lesion table
LESION_ATTRIBUTE = "BrainTumorSeg.RanoLesion"  # on a line: its lesion id
DIAMETER_ATTRIBUTE = "BrainTumorSeg.RanoDiameter"  # on a line: longest or perpendicular
ENGINE_POINTS_ATTRIBUTE = "BrainTumorSeg.EnginePoints"  # on a line: the two RAS points the engine drew (JSON)
READER_EDITED_ATTRIBUTE = "BrainTumorSeg.ReaderEdited"  # on a line: "1" once the reader moved it
DIAMETERS = ("longest", "perpendicular")
TOLERANCE_MM = 0.01  # points closer than this to the engine's are unmoved
PERPENDICULAR_TOLERANCE_DEGREES = 5.0
TABLE_COLUMNS = ("Lesion", "Kind", "Longest (mm)", "Perpendicular (mm)", "Product (mm2)", "Slice", "Enhancing (mL)",
                 "Note")
SUM_ROW = "Sum of products"


def ras(point_lps) -> list[float]:
    """An engine (ITK, LPS) point in Slicer's RAS."""
    return [-float(point_lps[0]), -float(point_lps[1]), float(point_lps[2])]


def line_points(line) -> np.ndarray:
    return np.array([line.GetNthControlPointPosition(i) for i in range(line.GetNumberOfControlPoints())])


def engine_points(line) -> np.ndarray:
    return np.array(json.loads(line.GetAttribute(ENGINE_POINTS_ATTRIBUTE) or "[]"))


def is_edited(line) -> bool:
    """True when the reader moved the line's ends away from where the engine drew them."""
    points, drawn = line_points(line), engine_points(line)
    return points.shape != drawn.shape or bool(np.abs(points - drawn).max(initial=0.0) > TOLERANCE_MM)


def rano_lines(segmentation_node) -> list:
    return [segmentation_node.GetNthNodeReference(LINE_ROLE, i)
            for i in range(segmentation_node.GetNumberOfNodeReferences(LINE_ROLE))
            if segmentation_node.GetNthNodeReference(LINE_ROLE, i) is not None]


def lines_needing_confirmation(segmentation_node) -> list:
    """The lines a new run into this segmentation would overwrite although the reader moved them."""
    if segmentation_node is None:
        return []
    return [line for line in rano_lines(segmentation_node) if is_edited(line)]


def measurement_of(segmentation_node) -> RanoMeasurement | None:
    text = segmentation_node.GetAttribute(RANO_ATTRIBUTE)
    return RanoMeasurement.from_dict(json.loads(text)) if text else None


def write_rano(scene, segmentation_node, rano: dict | RanoMeasurement | None, overwrite_edited: bool = False):
    """Store the engine's measurements on the segmentation node, draw the targets' lines, write the table.
    A line the reader moved is kept (and its lesion's row keeps the reader's values) unless `overwrite_edited`."""
    if not rano:
        return None
    measurement = rano if isinstance(rano, RanoMeasurement) else RanoMeasurement.from_dict(rano)
    segmentation_node.SetAttribute(RANO_ATTRIBUTE, json.dumps(measurement.to_dict()))
    existing = {(line.GetAttribute(LESION_ATTRIBUTE), line.GetAttribute(DIAMETER_ATTRIBUTE)): line
                for line in rano_lines(segmentation_node)}
    wanted = set()
    for lesion in measurement.lesions:
        if not lesion.target:
            continue
        for diameter in DIAMETERS:
            key = (str(lesion.id), diameter)
            wanted.add(key)
            line = existing.get(key)
            if line is not None and is_edited(line) and not overwrite_edited:
                continue
            points = [ras(p) for p in (getattr(lesion, diameter).start, getattr(lesion, diameter).end)]
            if line is None:
                line = _new_line(scene, segmentation_node, lesion.id, diameter)
            _draw(line, points)
    for key, line in existing.items():  # lines of lesions this run no longer has
        if key not in wanted and (overwrite_edited or not is_edited(line)):
            _remove_reference(segmentation_node, line)
            scene.RemoveNode(line)
    return update_table(scene, segmentation_node)


def _new_line(scene, segmentation_node, lesion_id: int, diameter: str):
    name = f"{segmentation_node.GetName()} lesion {lesion_id} {diameter}"
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", scene.GenerateUniqueName(name))
    line.SetAttribute(LESION_ATTRIBUTE, str(lesion_id))
    line.SetAttribute(DIAMETER_ATTRIBUTE, diameter)
    line.CreateDefaultDisplayNodes()
    colour = [int(lesion_colour(lesion_id)[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]
    display = line.GetDisplayNode()
    display.SetSelectedColor(*colour)
    display.SetColor(*colour)
    if diameter == "perpendicular":
        display.SetLineThickness(0.5 * display.GetLineThickness())
    segmentation_node.AddNodeReferenceID(LINE_ROLE, line.GetID())
    return line


def _draw(line, points: list[list[float]]) -> None:
    was = line.StartModify()
    line.RemoveAllControlPoints()
    for point in points:
        line.AddControlPoint(point)
    line.SetAttribute(ENGINE_POINTS_ATTRIBUTE, json.dumps(line_points(line).round(4).tolist()))
    line.SetAttribute(READER_EDITED_ATTRIBUTE, "0")
    line.EndModify(was)


def _remove_reference(segmentation_node, line) -> None:
    for index in reversed(range(segmentation_node.GetNumberOfNodeReferences(LINE_ROLE))):
        if segmentation_node.GetNthNodeReferenceID(LINE_ROLE, index) == line.GetID():
            segmentation_node.RemoveNthNodeReferenceID(LINE_ROLE, index)


def lesion_rows(segmentation_node) -> list[dict]:
    """One row per lesion: the engine's values, with the diameters of its lines (the reader's when moved)."""
    measurement = measurement_of(segmentation_node)
    if measurement is None:
        return []
    lines = {(line.GetAttribute(LESION_ATTRIBUTE), line.GetAttribute(DIAMETER_ATTRIBUTE)): line
             for line in rano_lines(segmentation_node)}
    rows = []
    for lesion in measurement.lesions:
        lengths = {d: getattr(lesion, d).length_mm for d in DIAMETERS}
        drawn = {d: lines.get((str(lesion.id), d)) for d in DIAMETERS}
        edited = []
        for diameter, line in drawn.items():
            if line is not None and line.GetNumberOfControlPoints() == 2:
                points = line_points(line)
                lengths[diameter] = round(float(np.linalg.norm(points[1] - points[0])), 2)
                if is_edited(line):
                    line.SetAttribute(READER_EDITED_ATTRIBUTE, "1")
                    edited.append(diameter)
        notes = [f"{' and '.join(edited)} moved by the reader"] if edited else []
        if edited and all(line is not None and line.GetNumberOfControlPoints() == 2 for line in drawn.values()):
            a, b = (np.diff(line_points(drawn[d]), axis=0)[0] for d in DIAMETERS)
            angle = math.degrees(math.acos(min(1.0, abs(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))))
            if abs(90.0 - angle) > PERPENDICULAR_TOLERANCE_DEGREES:
                notes.append(f"lines at {angle:.0f}°, not perpendicular")
        if lesion.reason:
            notes.append(lesion.reason)
        rows.append({"lesion": lesion.id, "kind": "target" if lesion.target else
                     ("measurable" if lesion.measurable else "non-measurable"),
                     "longest": lengths["longest"], "perpendicular": lengths["perpendicular"],
                     "product": round(lengths["longest"] * lengths["perpendicular"], 2), "slice": lesion.slice,
                     "enhancing_ml": lesion.volume_ml, "note": "; ".join(notes), "target": lesion.target,
                     "edited": bool(edited)})
    return rows


def update_table(scene, segmentation_node):
    """(Re)write the lesion table from the lines; its last row is the sum of products of the targets."""
    rows = lesion_rows(segmentation_node)
    table = referenced_table(scene, segmentation_node, TABLE_ROLE, "RANO lesions")
    vtk_table = table.GetTable()
    vtk_table.Initialize()
    kinds = (vtk.vtkStringArray, vtk.vtkStringArray, vtk.vtkDoubleArray, vtk.vtkDoubleArray, vtk.vtkDoubleArray,
             vtk.vtkIntArray, vtk.vtkDoubleArray, vtk.vtkStringArray)
    columns = []
    for name, kind in zip(TABLE_COLUMNS, kinds):
        column = kind()
        column.SetName(name)
        columns.append(column)
    for row in rows:
        values = (str(row["lesion"]), row["kind"], row["longest"], row["perpendicular"], row["product"],
                  row["slice"], row["enhancing_ml"], row["note"])
        for column, value in zip(columns, values):
            column.InsertNextValue(value)
    total = round(sum(row["product"] for row in rows if row["target"]), 2)
    for column, value in zip(columns, (SUM_ROW, "targets", 0.0, 0.0, total, -1, 0.0, "")):
        column.InsertNextValue(value)
    for column in columns:
        vtk_table.AddColumn(column)
    table.SetUseColumnTitleAsColumnHeader(True)
    table.Modified()
    return table


def sum_of_products(table) -> float:
    """The sum of products the table shows (its last row)."""
    vtk_table = table.GetTable()
    return float(vtk_table.GetColumnByName(TABLE_COLUMNS[4]).GetValue(vtk_table.GetNumberOfRows() - 1))


def observe_lines(scene, segmentation_node) -> list[tuple[object, int]]:
    """Update the table whenever the reader moves a line's end; returns (line, tag) pairs to remove observers."""
    observers = []
    for line in rano_lines(segmentation_node):
        tag = line.AddObserver(slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                               lambda caller, event: update_table(scene, segmentation_node))
        observers.append((line, tag))
    return observers
