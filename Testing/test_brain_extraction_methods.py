"""Brain extraction methods: deepbet (the default) finds the brain inside a head without the network, the
method choice reaches the preprocessing, and what it cannot do is one sentence."""

from __future__ import annotations

import importlib.metadata
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.brain_extraction import (AtlasBrainExtractor, BrainExtractionSettings, DeepbetBrainExtractor,
                                            brain_extractor)
from braintumorseg.cli import build_parser
from braintumorseg.errors import InputError
from braintumorseg.metrics import dice
from braintumorseg.pipeline import SegmentationSettings
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor
from braintumorseg.settings import DEFAULTS, RunSettings
from training.brain_extraction_benchmark import sample_head_case


@pytest.fixture(scope="module")
def head() -> dict:
    """The bundled sample given back a head, turned and moved onto a 1.2 mm grid (brain and tumour known)."""
    case = sample_head_case(("t1",))
    image = sitk.GetImageFromArray(case["arrays"]["t1"])
    image.CopyInformation(case["grid"])
    return {**case, "image": image}


def refuse_network(*_args, **_kwargs):
    raise AssertionError("brain extraction tried to reach the network")


@pytest.fixture(scope="module")
def stripped(head) -> dict:
    """The head skull-stripped by deepbet, with every network connection refused meanwhile."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse_network)
        patch.setattr(socket, "create_connection", refuse_network)
        preprocessor = Preprocessor(PreprocessSettings(bias_correction=False,
                                                       brain_extraction=BrainExtractionSettings(method="deepbet")))
        mask, warnings = preprocessor.brain_mask(head["image"], {"t1": head["arrays"]["t1"]})
    return {"preprocessor": preprocessor, "mask": mask, "warnings": warnings}


def test_deepbet_finds_the_brain_offline(head, stripped):
    # The template is the default: deepbet's lead on the raw exam is small and costs the 30 s (docs/brain-extraction.md).
    assert DEFAULTS.brain_extraction == "template" and BrainExtractionSettings().method == "template"
    assert isinstance(stripped["preprocessor"]._brain_extractor, DeepbetBrainExtractor)
    assert stripped["warnings"] == ["the inputs were not skull-stripped: the skull was stripped by deepbet (a brain "
                                    "extraction network) on the T1; check the result near the brain's edge."]
    mask = stripped["mask"]
    score = dice(mask, head["brain"])
    kept = (mask & head["tumour"]).sum() / head["tumour"].sum()
    print("deepbet brain Dice", round(score, 3), "tumour kept", round(float(kept), 4))
    assert score >= 0.94 and kept >= 0.99  # measured 0.953 and 100 % with the 2 mm margin (docs/brain-extraction.md)


def test_deepbet_weights_ship_inside_its_package_and_it_holds_no_download_code():
    files = {str(f): f for f in importlib.metadata.files("deepbet")}
    for name in ("data/models/model.pt", "data/models/bbox_model.pt"):
        assert name in files and Path(files[name].locate()).stat().st_size > 1_000_000
    sources = [Path(f.locate()).read_text() for name, f in files.items() if name.endswith(".py")]
    assert sources and not any(word in text for text in sources for word in ("http", "urllib", "requests"))


def test_method_choice_reaches_the_preprocessing():
    parser = build_parser()

    def settings(*extra: str) -> SegmentationSettings:
        args = parser.parse_args(["segment", "--t1", "x.nii.gz", "-o", "y.nii.gz", *extra])
        return SegmentationSettings.from_run(RunSettings.from_namespace(args))

    default, chosen = settings(), settings("--brain-extraction", "deepbet")
    assert "--brain-extraction" in RunSettings(brain_extraction="deepbet").to_argv()
    assert default.preprocess.brain_extraction.method == "template"
    assert chosen.preprocess.brain_extraction.method == "deepbet"
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "--t1", "x.nii.gz", "-o", "y.nii.gz", "--brain-extraction", "bet"])
    assert isinstance(brain_extractor(default.preprocess.brain_extraction), AtlasBrainExtractor)
    with pytest.raises(InputError, match="unknown brain extraction 'bet'; use template, deepbet"):
        brain_extractor(BrainExtractionSettings(method="bet"))


def test_what_deepbet_cannot_do_is_one_sentence(monkeypatch):
    ball = np.zeros((48, 48, 48), np.float32)
    z, y, x = np.ogrid[-24:24, -24:24, -24:24]
    ball[z ** 2 + y ** 2 + x ** 2 < 15 ** 2] = 300.0
    with pytest.raises(InputError, match="skull stripping failed.*--brain-extraction"):
        DeepbetBrainExtractor().mask(sitk.GetImageFromArray(ball))  # 14 mL at 1 mm: no brain
    monkeypatch.setitem(sys.modules, "deepbet", None)
    with pytest.raises(InputError, match="needs the deepbet package, which is not installed.*--brain-extraction "
                                         "template"):
        DeepbetBrainExtractor()
