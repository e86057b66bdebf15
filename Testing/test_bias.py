"""N4 bias-field correction on synthetic volumes."""

from __future__ import annotations

import numpy as np
from braintumorseg.bias import BiasCorrector
from braintumorseg.normalization import zscore
from phantoms import SPACING_XYZ, log_ratio_spread, smooth_field, tissue_phantom


def test_n4_removes_a_known_multiplicative_field():
    truth, mask = tissue_phantom()
    biased = truth * smooth_field()
    corrector = BiasCorrector()
    assert corrector.skip_reason(biased, mask) is None
    corrected = corrector.correct(biased, mask, SPACING_XYZ)
    before = log_ratio_spread(biased, truth, mask)
    after = log_ratio_spread(corrected, truth, mask)
    assert before > 0.1
    assert after < 0.15 * before, (before, after)
    np.testing.assert_array_equal(corrected[~mask], biased[~mask])


def test_n4_skips_already_normalized_images():
    truth, mask = tissue_phantom()
    normalized = zscore(truth, mask)
    assert "negative intensities" in BiasCorrector().skip_reason(normalized, mask)


def test_n4_fitted_without_a_large_bright_lesion_keeps_its_contrast():
    truth, mask = tissue_phantom()
    z, y, x = np.indices(mask.shape)
    centre = np.array(mask.shape) // 2 + np.array([0, 6, 6])
    lesion = mask & ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 14 ** 2)
    truth[lesion] *= 1.5  # edema-like: a quarter of the brain, brighter
    biased = truth * smooth_field()
    corrector = BiasCorrector()

    def lesion_error(corrected: np.ndarray) -> float:
        error = np.log(corrected[mask] / truth[mask])
        inside = lesion[mask]
        return float(error[inside].mean() - error[~inside].mean())

    with_lesion = corrector.correct(biased, mask, SPACING_XYZ)
    without = corrector.correct(biased, mask, SPACING_XYZ, fit_mask=mask & ~lesion)
    assert abs(lesion_error(without)) < 0.015 < abs(lesion_error(with_lesion)), (lesion_error(without),
                                                                                lesion_error(with_lesion))
    rest = mask & ~lesion
    assert log_ratio_spread(without, truth, rest) < 0.15 * log_ratio_spread(biased, truth, rest)
    np.testing.assert_array_equal(without[~mask], biased[~mask])
