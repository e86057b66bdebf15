"""Model card fields: every malformed value is refused when the card is loaded, naming the field."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from braintumorseg.cli import main
from braintumorseg.errors import InputError
from braintumorseg.modelcard import ModelCard
from braintumorseg.normalization import NyulStandardizer

MODALITIES = ["t1", "t1c", "t2", "flair"]


def learned_landmarks(seed: int = 0) -> list[float]:
    """Landmarks as `python -m training prepare --nyul` learns them."""
    values = np.random.default_rng(seed).gamma(2.0, 100.0, 5000)
    return NyulStandardizer.fit([values], [np.ones(values.shape, bool)]).landmarks


def nyul(landmarks) -> dict:
    return {"method": "nyul", "landmarks": landmarks}


def architecture(**kwargs) -> Callable[[dict], None]:
    return lambda card: card["architecture"]["kwargs"].update(kwargs)


@pytest.fixture
def card_path(tiny_card, tmp_path):
    """A private copy of the tiny card and its weights that a test may damage."""
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / tiny_card.path.name


def damage(card_path, change) -> None:
    """Rewrite the card with `change`: a dict of fields to set, or a function that edits the card."""
    card = json.loads(card_path.read_text())
    change(card) if callable(change) else card.update(change)
    card_path.write_text(json.dumps(card))


BROKEN = {
    "architecture string": ({"architecture": "SegResNet"}, "'architecture'"),
    "architecture list": ({"architecture": [1, 2]}, "'architecture'"),
    "architecture null": ({"architecture": None}, "'architecture'"),
    "architecture extra key": (lambda c: c["architecture"].update(extra=1), "'architecture'"),
    "architecture unknown": (lambda c: c["architecture"].update(name="UNetX"), "'architecture.name'"),
    "kwargs list": (lambda c: c["architecture"].update(kwargs=[1]), "'architecture.kwargs'"),
    "kwargs unknown argument": (architecture(foo=1), "unexpected keyword argument 'foo'"),
    "in_channels string": (architecture(in_channels="4"), "'architecture.kwargs.in_channels'"),
    "fewer channels than inputs": ({"channels": ["t1", "t1c", "flair"]}, "'architecture.kwargs.in_channels'"),
    "out_channels": (architecture(out_channels=2), "'architecture.kwargs.out_channels'"),
    "normalization string": ({"normalization": "zscore"}, "'normalization'"),
    "normalization extra key": ({"normalization": {"method": "zscore", "foo": 1}}, "'normalization'"),
    "normalization method": ({"normalization": {"method": "minmax"}}, "'normalization.method'"),
    "nyul other keys": ({"normalization": nyul({"foo": learned_landmarks()})}, "'normalization.landmarks.t1'"),
    "nyul one channel short": ({"normalization": nyul({m: learned_landmarks() for m in MODALITIES[1:]})},
                               "'normalization.landmarks.t1'"),
    "nyul too few": ({"normalization": nyul({m: [0, 1] for m in MODALITIES})}, "'normalization.landmarks.t1'"),
    "nyul strings": ({"normalization": nyul({m: ["0"] * 11 for m in MODALITIES})}, "'normalization.landmarks.t1'"),
    "nyul list": ({"normalization": nyul([1, 2])}, "'normalization.landmarks'"),
    "spacing 0": ({"spacing": [0, 1.5, 1.5]}, "'spacing'"),
    "spacing negative": ({"spacing": [-1.5, 1.5, 1.5]}, "'spacing'"),
    "spacing huge": ({"spacing": [1000, 1000, 1000]}, "'spacing'"),
    "spacing length 2": ({"spacing": [1.5, 1.5]}, "'spacing'"),
    "spacing number": ({"spacing": 1.5}, "'spacing'"),
    "spacing string": ({"spacing": "1.5"}, "'spacing'"),
    "divisible_by 0": ({"divisible_by": 0}, "'divisible_by'"),
    "divisible_by string": ({"divisible_by": "8"}, "'divisible_by'"),
    "roi int": ({"roi_size": 64}, "'roi_size'"),
    "roi 0": ({"roi_size": [0, 0, 0]}, "'roi_size'"),
    "roi not a multiple": ({"roi_size": [63, 64, 64]}, "multiples of divisible_by"),
    "threshold null": ({"threshold": None}, "'threshold'"),
    "threshold string": ({"threshold": "0.5"}, "'threshold'"),
    "threshold 2": ({"threshold": 2}, "'threshold'"),
    "subset_tta string": ({"subset_tta": "no"}, "'subset_tta'"),
    "name list": ({"name": ["x"]}, "'name'"),
    "sha256 int": ({"sha256": 5}, "'sha256'"),
    "sha256 missing": (lambda c: c.pop("sha256"), "'sha256'"),
    "weights_file int": ({"weights_file": 5}, "'weights_file'"),
    "weights_file null": ({"weights_file": None}, "'weights_file'"),
    "channels repeated": ({"channels": ["t1", "t1", "t2", "flair"]}, "'channels'"),
    "training list": ({"training": [1]}, "'training'"),
}


@pytest.mark.parametrize("variant", BROKEN)
def test_broken_card_is_refused_at_load(card_path, variant):
    change, words = BROKEN[variant]
    damage(card_path, change)
    with pytest.raises(InputError, match="model card field") as refused:
        ModelCard.load(card_path)
    message = str(refused.value)
    assert words in message and "\n" not in message
    assert message.endswith("fix the card or re-export it with `python -m training export`.")


def test_card_without_its_weights_is_refused_at_load(card_path):
    (card_path.parent / json.loads(card_path.read_text())["weights_file"]).unlink()
    with pytest.raises(InputError, match="named by the model card is missing; reinstall the model"):
        ModelCard.load(card_path)


def test_nyul_card_with_landmarks_for_every_channel_loads(card_path):
    damage(card_path, {"normalization": nyul({m: learned_landmarks(i) for i, m in enumerate(MODALITIES)})})
    assert ModelCard.load(card_path).normalization.method == "nyul"


def test_card_validates_before_export_gives_it_a_checksum(tiny_card):
    """`python -m training export` validates the card before the weights (and their checksum) are written."""
    replace(tiny_card, sha256="").validate()


def test_cli_refuses_a_broken_card_before_reading_images(capsys, card_path, tmp_path):
    """The FLAIR given is not an image at all: the card's error, not the image's, shows it is checked first."""
    damage(card_path, {"spacing": [0, 1.5, 1.5]})
    unreadable = tmp_path / "flair.nii.gz"
    unreadable.write_bytes(b"not an image")
    output = tmp_path / "seg.nii.gz"
    code = main(["segment", "--flair", str(unreadable), "-o", str(output), "--model", str(card_path),
                 "--no-tta", "--no-bias-correction", "--skull-strip", "off"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "braintumorseg: error: model card field 'spacing' must be three numbers from 0.2 to 10.0, the model "
        "grid's spacing in mm, not [0, 1.5, 1.5]; fix the card or re-export it with `python -m training export`."]
    assert not output.exists() and not list(tmp_path.glob(".seg.nii.gz*"))
