"""A scene to run the logic on outside the Slicer application (batch scripts and tests, with slicer-core)."""

from __future__ import annotations

import slicer


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
