"""What a result shows besides its segments: the volumes table, the probability overlay and the 3D surfaces."""

from __future__ import annotations

import vtk
from braintumorseg.labels import VOLUMES

from .segments import place_in_study

VOLUMES_TABLE_ROLE = "BrainTumorSeg.VolumesTable"
VOLUME_COLUMNS = ("Region", "Volume (mL)")
PROBABILITY_COLORS = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"  # one of Slicer's colour tables
PROBABILITY_SHOWN_FROM = 20.0  # % : the band below the shipped model's 50 % where the network hesitated
PROBABILITY_ATTRIBUTE = "BrainTumorSeg.ProbabilityMap"  # marks the volumes the engine's maps come back in


def referenced_table(scene, node, role: str, what: str):
    """The table the node references under `role`, made (named "<node> <what>") when it has none."""
    table = node.GetNodeReference(role)
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{node.GetName()} {what}"))
        node.SetNodeReferenceID(role, table.GetID())
    return table


def write_volumes_table(scene, segmentation_node, volumes_ml: dict[str, float]):
    """The table of tumour volumes in mL, referenced by (and stored next to) the segmentation node."""
    table = referenced_table(scene, segmentation_node, VOLUMES_TABLE_ROLE, "volumes")
    vtk_table = table.GetTable()
    vtk_table.Initialize()
    regions, volumes = vtk.vtkStringArray(), vtk.vtkDoubleArray()
    regions.SetName(VOLUME_COLUMNS[0])
    volumes.SetName(VOLUME_COLUMNS[1])
    for volume in VOLUMES:
        regions.InsertNextValue(volume.title)
        volumes.InsertNextValue(float(volumes_ml.get(volume.key, 0.0)))
    vtk_table.AddColumn(regions)
    vtk_table.AddColumn(volumes)
    table.SetColumnUnitLabel(VOLUME_COLUMNS[1], "mL")
    table.SetUseColumnTitleAsColumnHeader(True)
    table.Modified()
    place_in_study(scene, table, segmentation_node)
    return table


def add_probability_volume(scene, node, reference_volume, name: str) -> None:
    """Add the engine's whole-tumour probability map (0-100 %) as a new volume beside the reference: cold to
    hot over 0-100, and only from PROBABILITY_SHOWN_FROM % up, so that as an overlay it shows where the
    network saw tumour or hesitated (20-50 %) and nothing elsewhere."""
    node.SetName(scene.GenerateUniqueName(name))
    node.SetAttribute(PROBABILITY_ATTRIBUTE, "1")
    scene.AddNode(node)
    node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(PROBABILITY_COLORS)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 100.0)
    display.SetAutoThreshold(False)
    display.SetThreshold(PROBABILITY_SHOWN_FROM, 100.0)
    display.ApplyThresholdOn()
    place_in_study(scene, node, reference_volume)


def is_probability_map(node) -> bool:
    return node is not None and node.GetAttribute(PROBABILITY_ATTRIBUTE) is not None


def clear_probability_overlays(scene) -> None:
    """Take an earlier run's probability map off the slice views' foreground; the user's own layers stay."""
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        composite = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if is_probability_map(scene.GetNodeByID(composite.GetForegroundVolumeID() or "")):
            composite.SetForegroundVolumeID(None)


def show_in_3d(segmentation_node, visible: bool) -> None:
    """Show or hide the segments as surfaces in the 3D view."""
    if visible:
        segmentation_node.CreateClosedSurfaceRepresentation()
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetVisibility3D(visible)
