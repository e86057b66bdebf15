"""Intensity normalization: z-score inside the mask and Nyúl standardization."""

from __future__ import annotations

import numpy as np
import pytest
from braintumorseg.normalization import NYUL_PERCENTILES, NyulStandardizer, zscore

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


def test_zscore_statistics_inside_the_mask():
    image, mask = tissue_phantom(seed=1)
    out = zscore(image * 3.0 + 100.0, mask)
    assert abs(out[mask].mean()) < 1e-4
    assert abs(out[mask].std() - 1.0) < 1e-4
    assert not out[~mask].any()
    np.testing.assert_allclose(out, zscore(image, mask), atol=1e-4)  # invariant to a linear rescale


def test_zscore_of_a_constant_region_does_not_divide_by_zero():
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    out = zscore(np.where(mask, 7.0, 0.0), mask)
    assert np.all(np.isfinite(out)) and not out.any()


def test_nyul_maps_the_image_landmarks_onto_the_standard_scale():
    images, masks = zip(*(tissue_phantom(seed) for seed in range(3)))
    images = [img * scale for img, scale in zip(images, (1.0, 1.7, 0.6))]
    standardizer = NyulStandardizer.fit(list(images), list(masks))
    landmarks = np.array(standardizer.landmarks)
    assert landmarks[0] == pytest.approx(0.0) and landmarks[-1] == pytest.approx(100.0)
    assert np.all(np.diff(landmarks) >= 0)

    test_image, test_mask = tissue_phantom(seed=5)
    test_image = test_image * 2.3 + 40.0
    out = standardizer.apply(test_image, test_mask)
    spread = (landmarks[-1] - landmarks[0]) / 4.0
    expected = (landmarks - landmarks[len(landmarks) // 2]) / spread
    measured = np.percentile(out[test_mask], NYUL_PERCENTILES)
    np.testing.assert_allclose(measured, expected, atol=0.05)
    assert not out[~test_mask].any()
