"""The brain mask, its box and the skull-stripped check on synthetic volumes."""

from __future__ import annotations

import numpy as np
from braintumorseg.preprocessing import brain_box, foreground_mask, looks_skull_stripped

SHAPE = (48, 56, 52)
SPACING_XYZ = (2.0, 2.0, 2.0)


def tissue_phantom(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoidal brain of three tissues (piecewise constant + mild noise) and its mask."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    radius = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    mask = radius < 0.85
    tissue = np.where(radius < 0.35, 250.0, np.where(np.sin(6 * x) * np.cos(5 * y) > 0, 500.0, 800.0))
    image = np.where(mask, tissue + rng.normal(0, 8, SHAPE), 0).astype(np.float32)
    return image, mask


def smooth_field() -> np.ndarray:
    """A multiplicative field varying ±35% across the brain (a linear ramp plus a bump in log space)."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    return np.exp(0.3 * x - 0.15 * z + 0.1 * (y ** 2)).astype(np.float32)


def log_ratio_spread(image: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """Standard deviation of log(image / truth) inside the mask: 0 for a global scale of the truth."""
    return float(np.std(np.log(image[mask] / truth[mask])))


def test_brain_mask_and_box_with_margin():
    image, mask = tissue_phantom()
    found = foreground_mask({"t1": image, "t2": np.zeros_like(image)})
    np.testing.assert_array_equal(found, mask)
    assert looks_skull_stripped(found)
    box = brain_box(found, (2.0, 2.0, 2.0), margin_mm=4.0)
    for axis, piece in enumerate(box):
        present = np.flatnonzero(found.any(axis=tuple(a for a in range(3) if a != axis)))
        assert piece.start == max(0, present[0] - 2) and piece.stop == min(SHAPE[axis], present[-1] + 3)


def test_a_negative_background_is_not_brain():
    image, mask = tissue_phantom()
    normalized = np.where(mask, (image - image[mask].mean()) / image[mask].std(), -3.2).astype(np.float32)
    np.testing.assert_array_equal(foreground_mask({"flair": normalized}), mask)  # as BraTS 2013 ships its images
    assert looks_skull_stripped(foreground_mask({"flair": normalized}))


def test_a_head_does_not_look_skull_stripped():
    rng = np.random.default_rng(0)
    head = rng.uniform(50, 500, SHAPE).astype(np.float32)  # non-zero up to the border
    assert not looks_skull_stripped(foreground_mask({"t1": head}))
