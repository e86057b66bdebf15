"""The brain mask, its box and the skull-stripped check on synthetic volumes."""

from __future__ import annotations

import numpy as np
from braintumorseg.preprocessing import (NormalizationSpec, PreprocessSettings, Preprocessor, brain_box,
                                         foreground_mask, looks_skull_stripped)
from phantoms import SHAPE, tissue_phantom


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


def test_n4_refitted_without_a_tumour_changes_only_what_the_tumour_pulled(synthetic):
    """`refit_bias` with no tumour gives the channels `run` gave; with one, N4's field is fitted without it."""
    from braintumorseg.images import read_image
    from braintumorseg.preprocessing import Preprocessor
    preprocessor = Preprocessor()
    prepared = preprocessor.run({m: read_image(p, m) for m, p in synthetic.items()})
    assert set(prepared.uncorrected) == set(prepared.channels)
    again = preprocessor.refit_bias(prepared, np.zeros_like(prepared.mask))
    for modality, channel in prepared.channels.items():
        np.testing.assert_allclose(again[modality], channel, atol=1e-4)
    tumour = np.zeros_like(prepared.mask)
    centre = [n // 2 for n in tumour.shape]
    tumour[tuple(slice(c - 4, c + 4) for c in centre)] = True
    refitted = preprocessor.refit_bias(prepared, tumour)
    assert max(float(np.abs(refitted[m] - prepared.channels[m]).max()) for m in refitted) > 1e-3
    for modality, channel in refitted.items():
        np.testing.assert_array_equal(channel[~prepared.mask], prepared.channels[modality][~prepared.mask])


def test_z_score_statistics_of_a_stripped_mask_leave_its_edge_out():
    """4.5 mm inside a mask made here; the whole mask for Nyul, no margin, or a brain too thin to erode."""
    z, y, x = np.ogrid[:60, :60, :60]
    ball = (z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2 <= 20 ** 2
    interior = Preprocessor().statistics_region(ball, (1.0, 1.0, 1.0))
    assert interior is not None and not (interior & ~ball).any()
    radius = ((3 * np.count_nonzero(interior)) / (4 * np.pi)) ** (1 / 3)
    assert abs(radius - 15.5) < 0.5, "the ball eroded by 4.5 mm"
    assert Preprocessor().statistics_region(ball, (2.0, 2.0, 2.0)).sum() > interior.sum(), "in mm, not voxels"
    assert Preprocessor(normalization=NormalizationSpec("nyul")).statistics_region(ball, (1.0, 1.0, 1.0)) is None
    assert Preprocessor(PreprocessSettings(stripped_statistics_margin_mm=0.0)).statistics_region(
        ball, (1.0, 1.0, 1.0)) is None
    slab = np.zeros_like(ball)
    slab[28:33] = True  # 5 mm thick: eroded by 4.5 mm, nothing is left
    assert Preprocessor().statistics_region(slab, (1.0, 1.0, 1.0)) is None
