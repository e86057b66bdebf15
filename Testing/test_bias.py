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
