"""What preprocessing did and which model ran, in one sentence for the command line and the panel."""

from __future__ import annotations

from dataclasses import asdict

from braintumorseg.pipeline import SegmentationReport
from braintumorseg.run_summary import processing_summary


def test_after_a_run_the_status_line_says_what_preprocessing_did_and_which_model_ran():
    registration = [{"modality": "t2", "registered": True, "rating": "good", "score": 0.81},
                    {"modality": "flair", "registered": False, "rating": "good", "score": 0.9}]
    assert processing_summary(dict(registration=registration, skull_stripping="brain template registered onto the T1",
                                   network_space="atlas pose", reference="t1c",
                                   model="brats-segresnet-native 1.0.0")) == (
        "Registered onto the T1Gd: T2 (good, 0.81). Already aligned: FLAIR (good, 0.90). Skull stripping: brain "
        "template registered onto the T1. Network grid: atlas pose. Model: brats-segresnet-native 1.0.0.")
    assert processing_summary(dict(network_space="native", thick_slices=["t1", "flair"],
                                   n4_without_tumour_ml=31.04)) == (
        "Thick slices: T1, FLAIR. Bias correction fitted without the 31.0 mL tumour of a first pass. Network "
        "grid: native.")
    assert processing_summary(asdict(SegmentationReport())) == ""
