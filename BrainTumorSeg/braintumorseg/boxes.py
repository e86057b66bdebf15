"""The box around a mask, with a margin: MONAI's bounding box, as index slices."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from monai.transforms.utils import generate_spatial_bounding_box


def bounding_box(mask: np.ndarray, margin_voxels: int | Sequence[int] = 0) -> tuple[slice, ...]:
    """The index slices of the mask's bounding box grown by the margin on each side, clipped to the array."""
    start, end = generate_spatial_bounding_box(np.asarray(mask)[None], margin=margin_voxels, allow_smaller=True)
    return tuple(slice(int(low), int(high)) for low, high in zip(start, end))
