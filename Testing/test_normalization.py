"""Intensity normalization: z-score inside the mask and Nyúl standardization."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_erosion
from braintumorseg.normalization import NYUL_PERCENTILES, NyulStandardizer, zscore
from phantoms import tissue_phantom


def test_zscore_statistics_inside_the_mask():
    image, mask = tissue_phantom(seed=1)
    out = zscore(image * 3.0 + 100.0, mask)
    assert abs(out[mask].mean()) < 1e-4
    assert abs(out[mask].std() - 1.0) < 1e-4
    assert not out[~mask].any()
    np.testing.assert_allclose(out, zscore(image, mask), atol=1e-4)  # invariant to a linear rescale


def test_zscore_statistics_from_a_region_apply_to_the_whole_mask():
    """An extractor's mask with a dark shell (CSF, dura) at its edge: statistics from its interior ignore it."""
    image, mask = tissue_phantom(seed=1)
    interior = binary_erosion(mask, iterations=2)
    shell = mask & ~interior
    dark = np.where(shell, 0.1 * image, image)
    out = zscore(dark, mask, interior)
    np.testing.assert_allclose(out[interior], zscore(image, mask, interior)[interior], atol=1e-5)
    assert abs(out[interior].mean()) < 1e-4 and out[shell].mean() < out[interior].mean()
    assert not out[~mask].any() and out[shell].all()
    assert abs(zscore(dark, mask)[interior].mean()) > 0.01  # the whole mask's statistics feel the shell


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
