"""The scanner-native exam end to end with the engine's defaults: a regression floor against the consensus label."""

from __future__ import annotations

import pytest

from braintumorseg.pipeline import model_cards
from training.native_exam import RAW_EXAM, parse_variant, run

# Measured with engine 0.6.0's defaults (model 1.8.0, no TTA, template skull stripping): WT 0.788 / TC 0.790 /
# ET 0.804; engine 0.5.0's defaults (register off, native grid) gave 0.20 / 0.38 / 0.46. The floors sit a little
# below the measured values.
FLOORS = {"WT": 0.75, "TC": 0.75, "ET": 0.77}


@pytest.mark.skipif(not RAW_EXAM.is_dir(), reason=f"real data absent: {RAW_EXAM} (see ../shared/data/PROVENANCE.md)")
def test_raw_exam_with_the_defaults_stays_above_its_floor():
    card, native_card = model_cards()  # the shipped pair: the raw exam goes to the scanner-native model
    results = run([parse_variant("defaults:tta=false")], card, copy=False, native_card=native_card)
    raw = results["runs"]["raw defaults, smooth"]
    print({r: round(raw["scores"][r]["dice"], 3) for r in FLOORS}, raw["seconds"], "s")
    assert all(raw["scores"][r]["dice"] >= floor for r, floor in FLOORS.items())
    assert {r["modality"] for r in raw["registration"] if r["registered"]} >= {"t2", "flair"}
    assert all(r["rating"] == "good" for r in raw["registration"])
    assert "brain template" in raw["skull_stripping"] and raw["network_space"].startswith("atlas pose")
    assert raw["model"] == f"{native_card.name} {native_card.version}"
