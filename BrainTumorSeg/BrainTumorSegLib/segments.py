"""The result as segments: a segmentation node with named, coloured, SNOMED-coded segments in the reference
volume's study.

Also the rule that protects a user's work: a segmentation edited after BrainTumorSeg wrote it is replaced only
when the user chose it as output and confirmed.
"""

from __future__ import annotations

import hashlib
from enum import Enum

import numpy as np
import slicer
import vtk
from braintumorseg.labels import SEGMENTS, Segment
from vtk.util import numpy_support

TERMINOLOGY_CONTEXT = "Segmentation category and type - BrainTumorSeg"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
BRAIN = ("SCT", "12738006", "Brain")
SEGMENT_IDS = {segment.label: f"BrainTumorSeg_{segment.label}" for segment in SEGMENTS}
CONTENT_HASH_ATTRIBUTE = "BrainTumorSeg.ContentHash"
BINARY_LABELMAP = "Binary labelmap"


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


def write_segmentation(scene, labelmap_node, reference_volume, target=None, name: str = "Brain tumor"):
    """Fill `target` (or a new segmentation node) with the three segments from the engine's label map, written in
    `SEGMENT_CONVENTION` (its values are the segments' labels)."""
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
