"""Test helpers for the Slicer side on slicer-core: a scene as the application would set it up, volumes loaded
from files, the volumes table read back."""

from __future__ import annotations

import slicer

from BrainTumorSegLib import display


def new_scene():
    """A fresh MRML scene with what the Segmentations module would register, set as `slicer.mrmlScene`."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in _rules(factory)}
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                 slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule.__name__ not in registered:
            factory.RegisterConverterRule(rule())
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    return scene


def _rules(factory) -> list:
    rules = factory.GetConverterRules()
    return [rules[i] for i in range(len(rules))] if rules is not None else []


def load_volume(scene, path, name: str, label_map: bool = False):
    """Read an image file into a new volume node in the scene (for batch use without the application)."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if label_map else "vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise OSError(f"could not read {path} as a volume.")
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


def volumes_from_table(table) -> dict[str, float]:
    """Read the volumes back from a table written by `write_volumes_table` (region label → mL)."""
    vtk_table = table.GetTable()
    names, values = vtk_table.GetColumnByName(display.VOLUME_COLUMNS[0]), vtk_table.GetColumnByName(display.VOLUME_COLUMNS[1])
    return {names.GetValue(row): values.GetValue(row) for row in range(vtk_table.GetNumberOfRows())}
