"""Model cards and their weights: round trip, checksum and format-version refusal."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from braintumorseg.errors import InputError
from braintumorseg.modelcard import ModelCard, load_model


@pytest.fixture
def card_copy(tiny_card, tmp_path):
    """A private copy of the tiny card and its weights that a test may damage."""
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / tiny_card.path.name


def test_card_round_trip_and_weights_load(card_copy, tiny_card):
    card = ModelCard.load(card_copy)
    assert card.to_dict() == tiny_card.to_dict()
    network = load_model(card)
    reference = load_model(tiny_card)
    for (name, a), (_, b) in zip(network.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_damaged_weights_are_refused_by_checksum(card_copy):
    card = ModelCard.load(card_copy)
    data = bytearray(card.weights_path.read_bytes())
    data[-1] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        load_model(card)


def test_card_of_another_format_version_is_refused(card_copy):
    data = json.loads(card_copy.read_text())
    data["card_format"] = 99
    card_copy.write_text(json.dumps(data))
    with pytest.raises(InputError, match="format 99"):
        ModelCard.load(card_copy)


@pytest.mark.parametrize("change, message", [
    ({"regions": ["ET", "TC", "WT"]}, "regions"),
    ({"channels": ["t1", "pd"]}, "channels"),
    ({"missing_channels": "mean"}, "missing-channel"),
    ({"architecture": {"name": "VNet", "kwargs": {}}}, None),
])
def test_invalid_cards_are_refused(card_copy, change, message):
    data = json.loads(card_copy.read_text())
    data.update(change)
    card_copy.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message or "architecture"):
        load_model(ModelCard.load(card_copy))
