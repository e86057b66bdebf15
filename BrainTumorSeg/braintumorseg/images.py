"""Reading and checking input images, and putting them onto one reference grid in physical space."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import InputError

LABEL_VALUES = {0, 1, 2, 3, 4}
MIN_VOXELS_PER_AXIS = 8


def check_file(path: str | os.PathLike, what: str = "image", kind: str = "an image file") -> Path:
    """Refuse a path that is missing or a folder, before any work is done."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what}: file not found: {path}. Check the path.")
    if path.is_dir():
        raise InputError(f"{what}: {path} is a folder; give {kind} (NIfTI, NRRD or MHA).")
    return path


def read_image(path: str | os.PathLike, what: str = "image") -> sitk.Image:
    """Read a 3D scalar image as float32, refusing what cannot be an MRI volume."""
    path = check_file(path, what)
    problem = nifti_problem(path)
    if problem == "truncated":
        raise InputError(f"{what}: {path} is truncated or corrupt (it holds less data than its header "
                         "promises); copy or export the file again.")
    if problem == "not finite":
        raise InputError(f"{what}: {path} contains NaN or infinite voxel values; fix or re-export the volume.")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(
            f"{what}: cannot read {path}: it is not an image SimpleITK understands or it is "
            "corrupt. Give a NIfTI (.nii/.nii.gz), NRRD or MHA file.") from None
    return check_image(image, f"{what} ({path.name})")


@dataclass(frozen=True)
class NiftiLayout:
    """Where a single-file NIfTI image keeps its voxels, and how they are stored."""

    offset: int
    end: int
    dtype: np.dtype | None  # set for floating-point data only


NIFTI_FLOATS = {16: "f4", 64: "f8"}


def nifti_layout(header: bytes) -> NiftiLayout | None:
    """The data layout from a NIfTI-1 or NIfTI-2 header; None when the bytes are not such a header."""
    for order in "<>":
        if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] == 348:
            datatype, bitpix = struct.unpack(order + "2h", header[70:74])
            dims = struct.unpack(order + "8h", header[40:56])
            offset = int(struct.unpack(order + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(order + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", header[12:16])
            dims = struct.unpack(order + "8q", header[16:80])
            offset = struct.unpack(order + "q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    end = offset + math.prod(max(1, int(d)) for d in dims[1:1 + dims[0]]) * bitpix // 8
    dtype = np.dtype(order + NIFTI_FLOATS[datatype]) if datatype in NIFTI_FLOATS else None
    return NiftiLayout(offset, end, dtype)


def nifti_problem(path: Path) -> str | None:
    """What ITK would hide in a NIfTI file: data cut short (it zero-fills) or NaN/Inf voxels (it zeroes them)."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return None
    try:
        with (gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")) as handle:
            data = handle.read()
    except gzip.BadGzipFile:
        return None  # not gzip at all: SimpleITK says it cannot read it
    except (OSError, EOFError, zlib.error):
        return "truncated"
    layout = nifti_layout(data[:540])
    if layout is None:
        return None
    if len(data) < layout.end:
        return "truncated"
    if layout.dtype is not None and not np.all(np.isfinite(np.frombuffer(data[layout.offset:layout.end],
                                                                        layout.dtype))):
        return "not finite"
    return None


def check_image(image: sitk.Image, what: str) -> sitk.Image:
    """Validate dimension, pixel type and values; return the image as float32."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{what}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "give a single-channel (scalar) volume.")
    if image.GetDimension() == 4:
        size = image.GetSize()
        if size[3] != 1:
            raise InputError(f"{what}: is a 4D image ({size[3]} volumes); give one 3D volume.")
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise InputError(f"{what}: is a 2D image (size {image.GetSize()}); give a 3D volume.")
    if min(image.GetSize()) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"{what}: is {'×'.join(map(str, image.GetSize()))} voxels, too small to hold a brain "
                         f"(at least {MIN_VOXELS_PER_AXIS} along every axis); give the whole 3D series.")
    array = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what}: contains NaN or infinite voxel values; fix or re-export the volume.")
    if not np.any(array):
        raise InputError(f"{what}: every voxel is zero; this is an empty volume.")
    if array.min() == array.max():
        raise InputError(f"{what}: holds the one value {array.flat[0]:g} everywhere, so it is empty; give the "
                         "acquired series.")
    if _looks_like_label_map(image, array):
        raise InputError(f"{what}: looks like a label map (only values {sorted(np.unique(array).tolist())}),"
                         " not an MRI image; give the MRI volume instead.")
    return sitk.Cast(image, sitk.sitkFloat32)


def _looks_like_label_map(image: sitk.Image, array: np.ndarray) -> bool:
    integer = image.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                     sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)
    if not integer and not np.all(np.mod(array[::4, ::4, ::4], 1) == 0):
        return False
    values = np.unique(array[::2, ::2, ::2])
    return len(values) <= 5 and set(values.astype(int).tolist()) <= LABEL_VALUES


def overlap_fraction(image: sitk.Image, reference: sitk.Image) -> float:
    """Fraction of the reference's non-zero voxels that fall inside the image's field of view."""
    shrink = [max(1, s // 32) for s in reference.GetSize()]
    small_ref = sitk.Shrink(reference, shrink)
    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    covered = sitk.Resample(ones, small_ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    inside = sitk.GetArrayViewFromImage(small_ref) != 0
    if not inside.any():
        return 0.0
    return float(sitk.GetArrayViewFromImage(covered)[inside].mean())


def resample_to_reference(image: sitk.Image, reference: sitk.Image,
                          transform: sitk.Transform | None = None,
                          interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """Resample an image onto the reference grid in physical space (zero outside its field of view)."""
    return sitk.Resample(image, reference, transform or sitk.Transform(), interpolator, 0.0,
                         image.GetPixelID())


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-4) -> bool:
    """True when two images share size, spacing, origin and direction."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance * 100)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))


