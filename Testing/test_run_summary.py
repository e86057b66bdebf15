"""What preprocessing did and which model ran, in one sentence for the command line and the panel."""

from __future__ import annotations

from braintumorseg.run_summary import processing_summary


def test_after_a_run_the_status_line_says_what_preprocessing_did_and_which_model_ran():
    registration = [{"modality": "t2", "registered": True, "rating": "good", "score": 0.81},
                    {"modality": "flair", "registered": False, "rating": "good", "score": 0.9}]
    assert processing_summary(registration, "brain template registered onto the T1", "atlas pose", "t1c",
                              "brats-segresnet-native 1.0.0") == (
        "Registered onto the T1Gd: T2 (good, 0.81). Already aligned: FLAIR (good, 0.90). Skull stripping: brain "
        "template registered onto the T1. Network grid: atlas pose. Model: brats-segresnet-native 1.0.0.")
    assert processing_summary([], "", "native", thick_slices=["t1", "flair"]) == (
        "Thick slices: T1, FLAIR. Network grid: native.")
    assert processing_summary([], "", "") == ""
