"""Label conventions and regions: nested classes, conversions both ways, values a convention does not define."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from braintumorseg.errors import InputError
from braintumorseg.labels import (
    CONVENTIONS,
    ED,
    ET,
    NCR,
    from_internal,
    internal_from_regions,
    regions_from_internal,
    to_internal,
)
from braintumorseg.postprocessing import (
    PostprocessSettings,
    classes_from_probabilities,
)


@pytest.fixture
def card_copy(tiny_card, tmp_path):
    """A private copy of the tiny card and its weights that a test may damage."""
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / tiny_card.path.name


def test_regions_become_nested_classes():
    probabilities = np.zeros((3, 4, 4, 4), np.float32)
    probabilities[0, :2] = 0.9             # WT in the first half
    probabilities[1, :1] = 0.8             # TC inside WT
    probabilities[2, 0, :2] = 0.7          # ET inside TC
    probabilities[2, 3] = 0.9              # ET outside WT: dropped
    classes = classes_from_probabilities(probabilities, (1.0, 1.0, 1.0), PostprocessSettings(min_cluster_ml=0), 0.5)
    assert (classes[0, :2] == ET).all() and (classes[0, 2:] == NCR).all()
    assert (classes[1] == ED).all() and not classes[2:].any()
    np.testing.assert_array_equal(internal_from_regions(regions_from_internal(classes)), classes)


def test_label_conventions_convert_both_ways():
    internal = np.array([0, NCR, ED, ET], np.uint8)
    assert from_internal(internal, "brats2021").tolist() == [0, 1, 2, 4]
    assert from_internal(internal, "brats2023").tolist() == [0, 1, 2, 3]
    for convention, mapping in CONVENTIONS.items():
        values = np.array([0, *mapping])
        assert to_internal(values, convention).tolist() == [0, *mapping.values()], convention
    assert to_internal(np.array([1, 2, 3, 4]), "brats2015").tolist() == [NCR, ED, NCR, ET]
    assert to_internal(np.array([1, 2, 3]), "nnunet").tolist() == [ED, NCR, ET]
    brats2023 = from_internal(to_internal(np.array([0, 1, 2, 4]), "brats2021"), "brats2023")
    assert brats2023.tolist() == [0, 1, 2, 3]


def test_label_values_outside_a_convention_are_refused():
    with pytest.raises(InputError, match=r"\[4\].*brats2023"):
        to_internal(np.array([0, 1, 4]), "brats2023")
    with pytest.raises(InputError, match="unknown label convention"):
        to_internal(np.array([0, 1]), "brats2030")
    with pytest.raises(InputError, match="output label convention"):
        from_internal(np.array([0, 1]), "nnunet")
