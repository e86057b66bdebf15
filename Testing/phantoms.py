"""Synthetic brains for the preprocessing tests: a three-tissue phantom, a smooth bias field, how far an image is
from its truth."""

from __future__ import annotations

import numpy as np

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
