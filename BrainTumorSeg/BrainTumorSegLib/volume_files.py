"""Moving volumes between the scene and files the engine reads and writes, through Slicer's own storage nodes.

The storage nodes convert between Slicer's RAS and the files' LPS, so a label map read back lands exactly where
the engine put it.
"""

from __future__ import annotations

from pathlib import Path

import slicer


def write_volume(node, path: Path) -> None:
    """Write a scalar volume node (its voxels and IJK-to-RAS geometry) to a NRRD file."""
    if node.GetImageData() is None:
        raise ValueError(f"the volume '{node.GetName()}' has no image data; load it again.")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(0)
    if not storage.WriteData(node):
        raise OSError(f"could not write the volume '{node.GetName()}' to {path}; check the free disk space.")


def read_volume_file(path: Path, what: str = "segmentation result", label_map: bool = True):
    """Read an engine output file into a new (label map) volume node that is not yet in any scene."""
    node = slicer.vtkMRMLLabelMapVolumeNode() if label_map else slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(1)
    if not storage.ReadData(node):
        raise OSError(f"the {what} {path} could not be read.")
    return node
