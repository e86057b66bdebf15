"""A PNG of the axial, coronal and sagittal slices with the most tumour, labels overlaid in their colours."""

from __future__ import annotations

import io
import os

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .labels import SEGMENTS, to_internal
from .output_paths import write_bytes_atomic

VIEWS = ("axial", "coronal", "sagittal")


def _lps(image: sitk.Image) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The image as a (z, y, x) array in LPS orientation (rows anterior→posterior, columns right→left)."""
    oriented = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(oriented), oriented.GetSpacing()


def tumour_slices(classes: np.ndarray) -> dict[str, int]:
    """Index of the slice with the most tumour voxels along each axis (the middle one when none)."""
    tumour = classes > 0
    slices = {}
    for view, axis in zip(VIEWS, range(3)):
        counts = tumour.sum(axis=tuple(a for a in range(3) if a != axis))
        slices[view] = int(np.argmax(counts)) if counts.any() else classes.shape[axis] // 2
    return slices


def _view(array: np.ndarray, view: str, index: int) -> np.ndarray:
    """A 2D slice oriented for display (radiological: patient right on the left, superior up)."""
    if view == "axial":
        return array[index]
    if view == "coronal":
        return array[::-1, index, :]
    return array[::-1, :, index]


def _aspect(spacing: tuple[float, float, float], view: str) -> float:
    sx, sy, sz = spacing
    return {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}[view]


def _rgba(classes: np.ndarray, alpha: float) -> np.ndarray:
    colours = np.zeros(classes.shape + (4,), dtype=np.float32)
    for segment in SEGMENTS:
        colours[classes == segment.label] = (*segment.color, alpha)
    return colours


def overlay_png(background: sitk.Image, labels: sitk.Image, path: str | os.PathLike, convention: str,
                reference: sitk.Image | None = None, reference_convention: str = "brats2021",
                title: str = "", alpha: float = 0.45) -> dict[str, int]:
    """Write the figure (one row for the labels, one more for a reference when given); returns the slices."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("the figure needs matplotlib, which is not installed: "
                         "pip install 'braintumorseg[demo]' (or matplotlib).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    image, spacing = _lps(background)
    rows = [("segmentation", to_internal(_lps(labels)[0], convention))]
    if reference is not None:
        rows.append(("reference", to_internal(_lps(reference)[0], reference_convention)))
    slices = tumour_slices(rows[0][1])
    low, high = np.percentile(image[image != 0], (0.5, 99.5)) if image.any() else (0.0, 1.0)
    figure, axes = plt.subplots(len(rows), 3, figsize=(12, 4.2 * len(rows)), squeeze=False,
                                facecolor="black")
    for row, (name, classes) in enumerate(rows):
        for column, view in enumerate(VIEWS):
            axis = axes[row][column]
            aspect = _aspect(spacing, view)
            axis.imshow(_view(image, view, slices[view]), cmap="gray", vmin=low, vmax=high, aspect=aspect,
                        interpolation="nearest")
            axis.imshow(_rgba(_view(classes, view, slices[view]), alpha), aspect=aspect, interpolation="nearest")
            axis.set_title(f"{name}: {view} {slices[view]}", color="white", fontsize=10)
            axis.axis("off")
    handles = [Patch(color=s.color, label=s.name) for s in SEGMENTS]
    figure.legend(handles=handles, loc="lower center", ncol=3, frameon=False, labelcolor="white")
    if title:
        figure.suptitle(title, color="white")
    figure.tight_layout(rect=(0, 0.05, 1, 0.96))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, facecolor="black")
    plt.close(figure)
    write_bytes_atomic(buffer.getvalue(), path)
    return slices
