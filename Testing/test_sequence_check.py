"""The sequence check on real images: swaps of the bundled sample's sequences flagged, the correct ones not,
file names and header echo times that contradict their flags stopped, and the override."""

from __future__ import annotations

import shutil
from itertools import combinations

import nibabel
import numpy as np
import pytest

from braintumorseg.cli import main
from braintumorseg.errors import InputError
from braintumorseg.images import read_image
from braintumorseg.modalities import DISPLAY_NAMES, MODALITIES
from braintumorseg.pipeline import Pipeline, SegmentationSettings
from braintumorseg.preprocessing import PreprocessSettings, Preprocessor
from braintumorseg.sequence_check import (FEATURES, ContrastModel, SequenceChecker, SequenceCheckSettings,
                                          name_problems)

SWAPS = tuple(combinations(MODALITIES, 2))


@pytest.fixture(scope="module")
def prepared(sample):
    """The bundled sample as the pipeline prepares it (N4 off, for speed)."""
    images = {m: read_image(sample[m], m) for m in MODALITIES}
    return Preprocessor(PreprocessSettings(bias_correction=False)).run(images)


def swapped(channels: dict, a: str, b: str) -> dict:
    given = dict(channels)
    given[a], given[b] = channels[b], channels[a]
    return given


def test_correctly_named_sample_is_not_flagged(prepared):
    checker = SequenceChecker()
    assert checker.contrast_warnings(prepared.channels, prepared.mask, prepared.spacing_zyx) == []
    flags, looks_like, gain = checker.assess_channels(prepared.channels, prepared.mask, prepared.spacing_zyx)
    assert looks_like == flags and gain == 0.0


@pytest.mark.parametrize("a,b", SWAPS)
def test_each_pairwise_swap_is_said_in_one_sentence_naming_both(prepared, a, b):
    warnings = SequenceChecker().contrast_warnings(swapped(prepared.channels, a, b), prepared.mask,
                                                   prepared.spacing_zyx)
    assert len(warnings) == 1
    assert f"the {DISPLAY_NAMES[a]} and {DISPLAY_NAMES[b]} inputs look swapped" in warnings[0]
    assert "--trust-sequences" in warnings[0]


def test_the_override_trusts_the_flags(prepared):
    off = SequenceChecker(SequenceCheckSettings(enabled=False))
    assert off.contrast_warnings(swapped(prepared.channels, "t1", "t1c"), prepared.mask, prepared.spacing_zyx) == []
    too_strict = SequenceChecker(SequenceCheckSettings(margin=1e6))
    assert too_strict.contrast_warnings(swapped(prepared.channels, "t1", "t1c"), prepared.mask,
                                        prepared.spacing_zyx) == []


def test_swap_reaches_the_run_report(sample, tiny_card):
    images = {m: read_image(sample[m], m) for m in MODALITIES}
    images["t1"], images["t1c"] = images["t1c"], images["t1"]
    settings = SegmentationSettings(PreprocessSettings(bias_correction=False))
    _, report = Pipeline(tiny_card, settings).segment_images(images)
    assert sum("look swapped" in w for w in report.warnings) == 1


def copy_as(source, folder, name: str, description: str | None = None):
    """A copy of a real image under another file name (and NIfTI header description, as dcm2niix writes it)."""
    path = folder / name
    if description is None:
        shutil.copy(source, path)
    else:
        image = nibabel.load(str(source))
        image.header["descrip"] = description.encode()
        nibabel.save(image, str(path))
    return path


def test_file_names_that_contradict_their_flags(sample, tmp_path):
    t1n = copy_as(sample["t1"], tmp_path, "case-t1n.nii.gz")
    t1c = copy_as(sample["t1c"], tmp_path, "case-t1c.nii.gz")
    flair = copy_as(sample["flair"], tmp_path, "case_flair.nii.gz")
    plain = copy_as(sample["t2"], tmp_path, "series_0003.nii.gz")
    assert name_problems({"t1": t1n, "t1c": t1c, "flair": flair, "t2": plain}) == []
    swap = name_problems({"t1": t1c, "t1c": t1n})
    assert swap == ["the --t1 and --t1c files look swapped: the T1 file is T1Gd by its name (case-t1c.nii.gz) and "
                    "the T1Gd file is T1 by its name (case-t1n.nii.gz); give each file to its own flag, or add "
                    "--trust-sequences if the flags are right."]
    one = name_problems({"t1": flair, "t1c": t1c})
    assert one == ["the file given as --t1 (T1) is FLAIR by its name (case_flair.nii.gz); give it to --flair, or "
                   "add --trust-sequences if it is the T1."]


def test_header_echo_time_and_description_contradicting_the_flag(sample, tmp_path):
    t2_echo = copy_as(sample["t2"], tmp_path, "series_2.nii.gz", "TE=91;Time=222607.253")
    t1_echo = copy_as(sample["t1"], tmp_path, "series_10.nii.gz", "TE=12;Time=231118.330")
    described = copy_as(sample["flair"], tmp_path, "series_5.nii.gz", "AX FLAIR")
    assert name_problems({"t2": t2_echo, "t1": t1_echo, "flair": described}) == []
    problems = name_problems({"t1": t2_echo, "t2": t1_echo, "t1c": described})
    assert problems == [
        "the file given as --t1c (T1Gd) is FLAIR by its header description (series_5.nii.gz); give it to --flair, "
        "or add --trust-sequences if it is the T1Gd.",
        "the file given as --t1 (T1) has an echo time of 91 ms in its header, a T2-weighted sequence; check which "
        "file is which, or add --trust-sequences if it is the T1.",
        "the file given as --t2 (T2) has an echo time of 12 ms in its header, a T1-weighted sequence; check which "
        "file is which, or add --trust-sequences if it is the T2."]


def test_command_line_stops_on_a_name_swap_unless_trusted(sample, tiny_card, tmp_path, capsys):
    t1n = copy_as(sample["t1"], tmp_path, "case-t1n.nii.gz")
    t1c = copy_as(sample["t1c"], tmp_path, "case-t1c.nii.gz")
    output = tmp_path / "labels.nii.gz"
    args = ["segment", "--t1", str(t1c), "--t1c", str(t1n), "-o", str(output), "--model", str(tiny_card.path),
            "--no-bias-correction", "--no-tta"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "the --t1 and --t1c files look swapped" in error and error.count("\n") == 1
    assert not output.exists()
    assert main(args + ["--trust-sequences"]) == 0
    assert output.exists() and "look swapped" not in capsys.readouterr().err


def test_a_missing_or_foreign_contrast_model_is_one_sentence(prepared, tmp_path):
    checker = SequenceChecker(model_path=tmp_path / "missing.json")
    with pytest.raises(InputError, match="contrast model .* cannot be read .* --trust-sequences"):
        checker.contrast_warnings(prepared.channels, prepared.mask, prepared.spacing_zyx)
    model = ContrastModel.fit(np.random.default_rng(0).normal(size=(8, len(FEATURES))), list(MODALITIES) * 2, 1.0)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(model.to_json().replace('"q1"', '"q2"'))
    with pytest.raises(InputError, match="made for other statistics"):
        ContrastModel.load(foreign)
