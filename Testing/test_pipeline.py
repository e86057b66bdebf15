"""The pipeline's stages: progress, timings, report, and cancel leaving nothing behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.errors import Cancelled, InputError
from braintumorseg.inference import select_device
from braintumorseg.pipeline import CancelToken, Pipeline, SegmentationSettings, tumour_volumes_ml
from braintumorseg.preprocessing import PreparedCase, PreprocessSettings
from braintumorseg.protocol import REFIT_BIAS, STAGE_WEIGHTS
from braintumorseg.postprocessing import PostprocessSettings


def test_progress_report_and_output(tiny_card, synthetic, tmp_path):
    events = []
    output, report_path = tmp_path / "out" / "seg.nii.gz", tmp_path / "out" / "report.json"
    report = Pipeline(tiny_card, progress=lambda stage, fraction: events.append((stage, fraction))).segment_files(
        synthetic, output, report_path)
    fractions = [f for _, f in events]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and events[-1] == ("done", 1.0)
    stages = [s for s, _ in events if s != "done"]
    assert list(dict.fromkeys(stages)) == [s for s in STAGE_WEIGHTS if s != REFIT_BIAS]  # every stage, in order
    assert set(report.stage_seconds) >= set(STAGE_WEIGHTS) - {"write output", REFIT_BIAS}
    assert report.total_seconds > 0 and report.device == select_device("auto").type and report.reference == "t1c"
    saved = json.loads(report_path.read_text())
    assert saved["volumes_ml"] == report.volumes_ml and saved["output"] == str(output)
    labels = sitk.ReadImage(str(output))
    assert labels.GetPixelID() == sitk.sitkUInt8
    classes = sitk.GetArrayFromImage(labels)
    voxel_ml = np.prod(labels.GetSpacing()) / 1000
    assert report.volumes_ml["whole_tumour"] == pytest.approx(np.count_nonzero(classes) * voxel_ml, abs=1e-3)


def test_volumes_in_ml():
    classes = np.zeros((10, 10, 10), np.uint8)
    classes[:2] = 1
    classes[2:5] = 2
    classes[5:6] = 3
    volumes = tumour_volumes_ml(classes, (2.0, 1.0, 1.0))
    assert volumes == {"necrotic_core": 0.4, "edema": 0.6, "enhancing": 0.2, "tumour_core": 0.6,
                       "whole_tumour": 1.2}


@pytest.mark.parametrize("stage", ["load inputs", "load model", "align to reference", "brain mask",
                                   "bias correction", "normalization", "inference", "post-processing",
                                   "write output"])
def test_cancel_from_the_progress_callback_leaves_nothing(tiny_card, synthetic, tmp_path, stage):
    token = CancelToken()
    seen = []

    def progress(name, fraction):
        seen.append(name)
        if name == stage:
            token.cancel()

    folder = tmp_path / "out"
    folder.mkdir()
    pipeline = Pipeline(tiny_card, SegmentationSettings(postprocess=PostprocessSettings(min_cluster_ml=0)),
                        progress, token)
    with pytest.raises(Cancelled):
        pipeline.segment_files(synthetic, folder / "seg.nii.gz", folder / "report.json")
    assert stage in seen and "done" not in seen
    assert list(folder.iterdir()) == []


def test_a_report_that_cannot_be_written_leaves_no_label_map_and_no_probability_map(tiny_card, synthetic, tmp_path):
    folder = tmp_path / "out"
    (folder / "report.json").mkdir(parents=True)  # a folder where the report should go: writing it fails
    with pytest.raises(OSError):
        Pipeline(tiny_card).segment_files(synthetic, folder / "seg.nii.gz", folder / "report.json",
                                          folder / "wt.nii.gz")
    assert [p.name for p in folder.iterdir()] == ["report.json"]


def test_a_pipeline_segments_several_cases_with_one_model(tiny_card, tmp_path):
    from conftest import synthetic_case
    pipeline = Pipeline(tiny_card, SegmentationSettings(label_convention="brats2023"))
    for seed in (1, 2):
        folder = tmp_path / f"case{seed}"
        folder.mkdir()
        report = pipeline.segment_files(synthetic_case(folder, seed=seed), folder / "seg.nii.gz")
        assert report.label_convention == "brats2023"
        assert set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg.nii.gz"))))) <= {0, 1, 2, 3}
    assert "load model" not in report.stage_seconds   # loaded once, for the first case


def test_a_scanner_native_exam_is_segmented_by_the_native_model(tiny_card, synthetic, tmp_path):
    """With a model for scanner-native exams beside the default, a case that needed aligning or skull stripping
    goes to it and everything else to the default; the report names the model that ran, loaded once."""
    from dataclasses import replace

    from conftest import make_tiny_card
    native = make_tiny_card(tmp_path / "native", seed=1, name="tiny-native")
    pipeline = Pipeline(tiny_card, native_card=native)
    assert pipeline.models() == "tiny-test 0.0.1 (tiny-native 0.0.1 for scanner-native exams)"
    case = PreparedCase(sitk.Image(4, 4, 4, sitk.sitkFloat32), (slice(None),) * 3, np.ones((4, 4, 4), bool), {},
                        (1.0, 1.0, 1.0))
    assert pipeline.card_for(case) is tiny_card
    assert pipeline.card_for(replace(case, scanner_native=True)) is native
    assert Pipeline(tiny_card).card_for(replace(case, scanner_native=True)) is tiny_card
    seen = []
    pipeline.progress = lambda stage, fraction: seen.append((stage, fraction))
    report = pipeline.segment_files(synthetic, tmp_path / "seg.nii.gz")  # one grid, skull-stripped
    assert report.model == "tiny-test 0.0.1" and "load model" in report.stage_seconds
    t2 = sitk.ReadImage(str(synthetic["t2"]))  # the T2 on a grid of its own, as a scanner writes each series
    coarser = sitk.Resample(t2, [24, 28, 26], sitk.Transform(), sitk.sitkLinear, t2.GetOrigin(), (3.3, 3.3, 3.3),
                            t2.GetDirection())
    sitk.WriteImage(coarser, str(tmp_path / "t2_own_grid.nii.gz"))
    seen.clear()
    report = pipeline.segment_files(dict(synthetic, t2=tmp_path / "t2_own_grid.nii.gz"), tmp_path / "seg2.nii.gz")
    assert report.model == "tiny-native 0.0.1" and "load model" in report.stage_seconds
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    report = pipeline.segment_files(synthetic, tmp_path / "seg3.nii.gz")  # both loaded now: none loads again
    assert report.model == "tiny-test 0.0.1" and "load model" not in report.stage_seconds
    with pytest.raises(InputError, match="reads other channels or another normalization"):
        Pipeline(tiny_card, native_card=replace(native, channels=["t1", "t1c", "flair"]))


def test_a_model_trained_on_n4_without_the_tumour_gets_n4_refitted_so(tiny_card, synthetic, tmp_path):
    """A card with `n4_without_tumour` is run twice: one pass finds the tumour, N4 is fitted again without it,
    the second pass gives the result; the report says how much tumour was left out. Other cards run once."""
    from dataclasses import replace
    refitting = replace(tiny_card, n4_without_tumour=True)
    seen = []
    report = Pipeline(refitting, progress=lambda stage, fraction: seen.append((stage, fraction))).segment_files(
        synthetic, tmp_path / "seg.nii.gz")
    assert report.n4_without_tumour_ml is not None and report.n4_without_tumour_ml >= 0
    assert "bias correction" not in report.stage_seconds, "N4 runs once, without the tumour"
    assert REFIT_BIAS in report.stage_seconds and [s for s, _ in seen].index(REFIT_BIAS) < [
        s for s, _ in seen].index("inference")
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[[s for s, _ in seen].index("post-processing")] < 0.95  # the two passes are not counted twice
    once = Pipeline(tiny_card).segment_files(synthetic, tmp_path / "seg1.nii.gz")
    assert once.n4_without_tumour_ml is None and REFIT_BIAS not in once.stage_seconds
    assert "bias correction" in once.stage_seconds
    assert Pipeline(refitting).prepare_files(synthetic).case.uncorrected  # kept for the refit only
    assert not Pipeline(tiny_card).prepare_files(synthetic).case.uncorrected
    no_n4 = Pipeline(refitting, SegmentationSettings(PreprocessSettings(bias_correction=False)))
    assert no_n4.segment_files(synthetic, tmp_path / "seg2.nii.gz").n4_without_tumour_ml is None
