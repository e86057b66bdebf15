"""The result in the scene: a segmentation node with named, coloured, coded segments, and a volumes table.

Also the rule that protects a user's work: a segmentation edited after BrainTumorSeg wrote it is replaced only
when the user chose it as output and confirmed.
"""

from __future__ import annotations

import hashlib
from enum import Enum

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from braintumorseg.labels import SEGMENTS, CONVENTIONS, Segment

TERMINOLOGY_CONTEXT = "Segmentation category and type - BrainTumorSeg"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
BRAIN = ("SCT", "12738006", "Brain")
SEGMENT_IDS = {segment.label: f"BrainTumorSeg_{segment.label}" for segment in SEGMENTS}
CONTENT_HASH_ATTRIBUTE = "BrainTumorSeg.ContentHash"
VOLUMES_TABLE_ROLE = "BrainTumorSeg.VolumesTable"
PROBABILITY_COLORS = "vtkMRMLColorTableNodeFileColdToHotRainbow.txt"  # one of Slicer's colour tables
PROBABILITY_SHOWN_FROM = 20.0  # % : the band below the shipped model's 50 % where the network hesitated
PROBABILITY_ATTRIBUTE = "BrainTumorSeg.ProbabilityMap"  # marks the volumes the engine's maps come back in
BINARY_LABELMAP = "Binary labelmap"

# Rows of the volumes table: key in the engine's report → what the user reads.
VOLUME_ROWS = (
    ("necrotic_core", "Necrotic tumor core"),
    ("edema", "Peritumoral edema"),
    ("enhancing", "Enhancing tumor"),
    ("tumour_core", "Tumor core (necrotic + enhancing)"),
    ("whole_tumour", "Whole tumor (all three)"),
)
VOLUME_COLUMNS = ("Region", "Volume (mL)")


def terminology_entry(segment: Segment) -> str:
    """The segment's terminology in Slicer's serialized form (context, category, type, anatomic region)."""
    entry = slicer.vtkSlicerTerminologyEntry()
    entry.SetTerminologyContextName(TERMINOLOGY_CONTEXT)
    for coded, (scheme, value, meaning) in ((entry.GetCategoryObject(), segment.category),
                                            (entry.GetTypeObject(), segment.type)):
        coded.SetCodingSchemeDesignator(scheme)
        coded.SetCodeValue(value)
        coded.SetCodeMeaning(meaning)
    # Slicer 5.8 renamed "anatomic region" to "region"; keep working with both.
    getattr(entry, "SetRegionContextName", getattr(entry, "SetAnatomicContextName", None))(ANATOMIC_CONTEXT)
    region = getattr(entry, "GetRegionObject", getattr(entry, "GetAnatomicRegionObject", None))()
    region.SetCodingSchemeDesignator(BRAIN[0])
    region.SetCodeValue(BRAIN[1])
    region.SetCodeMeaning(BRAIN[2])
    return slicer.vtkSlicerTerminologiesModuleLogic().SerializeTerminologyEntry(entry)


def set_terminology(segment, entry: str) -> None:
    if hasattr(segment, "SetTerminology"):
        segment.SetTerminology(entry)
    else:
        segment.SetTag(segment.GetTerminologyEntryTagName(), entry)


def get_terminology(segment) -> str:
    if hasattr(segment, "GetTerminology"):
        return segment.GetTerminology()
    value = vtk.reference("")
    segment.GetTag(segment.GetTerminologyEntryTagName(), value)
    return str(value)


def content_hash(node) -> str:
    """A fingerprint of what the segments hold (names and voxels), insensitive to how Slicer stores them."""
    digest = hashlib.sha256()
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        digest.update(f"{segment_id}\0{segment.GetName()}\0".encode())
        image = segment.GetRepresentation(BINARY_LABELMAP)
        if image is None or image.GetPointData().GetScalars() is None:
            continue
        extent = image.GetExtent()
        shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
        mask = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape) == segment.GetLabelValue()
        if not mask.any():
            continue
        nonzero = np.nonzero(mask)
        low = [int(axis.min()) for axis in nonzero]
        high = [int(axis.max()) + 1 for axis in nonzero]
        start = np.array(low) + np.array([extent[4], extent[2], extent[0]])
        digest.update(start.astype(np.int64).tobytes())
        digest.update(np.packbits(mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]]).tobytes())
        digest.update(str(mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]].shape).encode())
    return digest.hexdigest()


def holds_user_work(node) -> bool:
    """True when replacing the node's segments could lose something the user made or edited."""
    if node is None or node.GetSegmentation().GetNumberOfSegments() == 0:
        return False
    stored = node.GetAttribute(CONTENT_HASH_ATTRIBUTE)
    return stored is None or stored != content_hash(node)


class OutputTarget(Enum):
    NEW_NODE = "new node"
    REPLACE = "replace"


def choose_target(chosen_output, replace_confirmed: bool) -> OutputTarget:
    """Where a run writes: into the chosen node only if that loses nothing or the user confirmed."""
    if chosen_output is None:
        return OutputTarget.NEW_NODE
    if holds_user_work(chosen_output) and not replace_confirmed:
        return OutputTarget.NEW_NODE
    return OutputTarget.REPLACE


def needs_confirmation(chosen_output) -> bool:
    """The panel asks before a run that would replace user work in the chosen output."""
    return holds_user_work(chosen_output)


def consecutive_labels(labelmap_node, convention: str = "brats2021") -> None:
    """Turn the engine's label values (e.g. 1/2/4) into 1, 2, 3 in SEGMENTS order, in place."""
    image = labelmap_node.GetImageData()
    values = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    order = [segment.label for segment in SEGMENTS]
    converted = np.zeros_like(values)
    for file_value, internal in CONVENTIONS[convention].items():
        converted[values == file_value] = order.index(internal) + 1
    values[:] = converted
    image.Modified()


def write_segmentation(scene, labelmap_node, reference_volume, target=None, name: str = "Brain tumor"):
    """Fill `target` (or a new segmentation node) with the three segments from the engine's label map."""
    consecutive_labels(labelmap_node)
    created = target is None
    node = target
    if created:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
    try:
        segmentation = node.GetSegmentation()
        segmentation.RemoveAllSegments()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        segment_ids = vtk.vtkStringArray()
        for segment in SEGMENTS:
            segment_id = SEGMENT_IDS[segment.label]
            segmentation.AddEmptySegment(segment_id, segment.name, list(segment.color))
            set_terminology(segmentation.GetSegment(segment_id), terminology_entry(segment))
            segment_ids.InsertNextValue(segment_id)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
                labelmap_node, node, segment_ids):
            raise RuntimeError("the segmentation result could not be imported into the scene.")
        node.SetAttribute(CONTENT_HASH_ATTRIBUTE, content_hash(node))
        place_in_study(scene, node, reference_volume)
    except Exception:
        if created:
            scene.RemoveNode(node)
        raise
    return node


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


def place_in_study(scene, node, reference_volume) -> None:
    """Put the node under the same subject-hierarchy parent (the study) as the reference volume."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    reference_item = hierarchy.GetItemByDataNode(reference_volume)
    if not reference_item:
        return
    parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:  # the application creates items when nodes are added; a batch scene may not
        hierarchy.CreateItem(parent, node)


def write_volumes_table(scene, segmentation_node, volumes_ml: dict[str, float]):
    """The table of tumour volumes in mL, referenced by (and stored next to) the segmentation node."""
    table = segmentation_node.GetNodeReference(VOLUMES_TABLE_ROLE)
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode",
                                        scene.GenerateUniqueName(f"{segmentation_node.GetName()} volumes"))
        segmentation_node.SetNodeReferenceID(VOLUMES_TABLE_ROLE, table.GetID())
    vtk_table = table.GetTable()
    vtk_table.Initialize()
    regions, volumes = vtk.vtkStringArray(), vtk.vtkDoubleArray()
    regions.SetName(VOLUME_COLUMNS[0])
    volumes.SetName(VOLUME_COLUMNS[1])
    for key, label in VOLUME_ROWS:
        regions.InsertNextValue(label)
        volumes.InsertNextValue(float(volumes_ml.get(key, 0.0)))
    vtk_table.AddColumn(regions)
    vtk_table.AddColumn(volumes)
    table.SetColumnUnitLabel(VOLUME_COLUMNS[1], "mL")
    table.SetUseColumnTitleAsColumnHeader(True)
    table.Modified()
    place_in_study(scene, table, segmentation_node)
    return table


def volumes_from_table(table) -> dict[str, float]:
    """Read the volumes back from a table written by `write_volumes_table` (region label → mL)."""
    vtk_table = table.GetTable()
    names, values = vtk_table.GetColumnByName(VOLUME_COLUMNS[0]), vtk_table.GetColumnByName(VOLUME_COLUMNS[1])
    return {names.GetValue(row): values.GetValue(row) for row in range(vtk_table.GetNumberOfRows())}


def show_in_3d(segmentation_node, visible: bool) -> None:
    """Show or hide the segments as surfaces in the 3D view."""
    if visible:
        segmentation_node.CreateClosedSurfaceRepresentation()
    display = segmentation_node.GetDisplayNode()
    if display is not None:
        display.SetVisibility3D(visible)
