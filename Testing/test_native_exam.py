"""The scanner-native exam end to end with the engine's defaults: a regression floor against the consensus label."""

from __future__ import annotations

import pytest

from braintumorseg.pipeline import models_for
from training.native_exam import RAW_EXAM, parse_variant, run

# Measured with engine 0.10.0's defaults (the raw exam goes to brats-segresnet-native 1.1.0, two passes, N4 fitted once,
# without the first pass's tumour; no TTA, template skull stripping, z-score statistics 4.5 mm inside the brain mask,
# registration on a 2 mm working grid, smooth carrying): WT 0.873 / TC 0.851 / ET 0.835, the first pass finding
# 26.5 mL of tumour. Engine 0.9.0 gave 0.838 / 0.856 / 0.818 (20.2 mL), 0.8.0 0.818 / 0.828 / 0.819, engine 0.5.0's
# defaults (register off, native grid) 0.20 / 0.38 / 0.46. The floors sit a little below 0.10.0's values, WT and
# ET above 0.9.0's.
FLOORS = {"WT": 0.86, "TC": 0.84, "ET": 0.82}
# Each raw sequence's registration onto the raw T1Gd against its direct registration onto the copy's same sequence:
# 0.86 / 0.93 / 1.00 mm mean, 1.62 / 1.77 / 1.90 mm at most (T1 / T2 / FLAIR) on the 2 mm working grid; on the own
# grids 2.35 / 1.02 / 1.97 mean, 4.47 / 1.94 / 3.74 at most.
MEAN_REGISTRATION_ERROR_MM = 1.3


@pytest.mark.skipif(not RAW_EXAM.is_dir(), reason=f"real data absent: {RAW_EXAM} (see ../shared/data/PROVENANCE.md)")
def test_raw_exam_with_the_defaults_stays_above_its_floor():
    card, native_card = models_for()  # the shipped pair: the raw exam goes to the scanner-native model
    results = run([parse_variant("defaults:tta=false")], card, copy=False, native_card=native_card)
    raw = results["runs"]["raw defaults, smooth"]
    print({r: round(raw["scores"][r]["dice"], 3) for r in FLOORS}, raw["seconds"], "s")
    assert all(raw["scores"][r]["dice"] >= floor for r, floor in FLOORS.items())
    assert {r["modality"] for r in raw["registration"] if r["registered"]} >= {"t2", "flair"}
    assert all(r["rating"] == "good" for r in raw["registration"])
    assert "brain template" in raw["skull_stripping"] and raw["network_space"].startswith("atlas pose")
    assert raw["model"] == f"{native_card.name} {native_card.version}"
    assert raw["n4_without_tumour_ml"] == pytest.approx(26.5, abs=5.0), "the first pass found the tumour"
    errors = results["registration_errors"]
    print(errors)
    assert set(errors) == {"t1", "t2", "flair"}
    assert all(e["mean_mm"] < MEAN_REGISTRATION_ERROR_MM and e["max_mm"] < 2.5 for e in errors.values())


def test_a_variant_names_preprocessing_and_inference_settings():
    variant = parse_variant("coarse:tta=false,one_pass_up_to=1,bias_correction=false,brain_extraction=deepbet")
    inference, preprocess = variant.settings.inference, variant.settings.preprocess
    assert variant.name == "coarse" and (inference.tta, inference.one_pass_up_to) == (False, 1.0)
    assert not preprocess.bias_correction and preprocess.brain_extraction.method == "deepbet"
    assert parse_variant("defaults").settings == parse_variant("defaults:").settings
    with pytest.raises(SystemExit, match="unknown variant key 'threshold'"):
        parse_variant("x:threshold=0.3")
