"""The brain mask, its box and the skull-stripped check on synthetic volumes."""

from __future__ import annotations

import numpy as np
from braintumorseg.preprocessing import brain_box, foreground_mask, looks_skull_stripped
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
