"""Every bad input through the command line: exit 2, one clear sentence, no traceback, no output file."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.cli import main

from conftest import ROOT


def write(array: np.ndarray, path, spacing=None, origin=None, like=None):
    image = sitk.GetImageFromArray(array)
    if like is not None:
        image.CopyInformation(like)
    if spacing:
        image.SetSpacing(spacing)
    if origin:
        image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def run_failing(capsys, argv, output) -> str:
    """Run the CLI, expect exit 2 and one sentence on stderr; return it. No output may be left."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    assert len(lines) == 1, captured.err
    assert not output.exists()
    assert not list(output.parent.glob(f".{output.name}*")), "a partial file was left behind"
    return lines[0]


def run_keeping(capsys, argv, kept) -> str:
    """Run the CLI, expect exit 2 and one sentence on stderr; return it. The file `kept` must be unchanged."""
    before = kept.read_bytes()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert kept.read_bytes() == before
    return err


def bad_case(synthetic, tmp_path, kind):
    """The synthetic case with its T1 replaced by the kind of bad file named."""
    t1 = tmp_path / "bad_t1.nii.gz"
    good_image = sitk.ReadImage(str(synthetic["t1"]))
    good = sitk.GetArrayFromImage(good_image)
    if kind == "missing":
        t1 = tmp_path / "does_not_exist.nii.gz"
    elif kind == "folder":
        t1 = tmp_path
    elif kind == "not an image":
        t1 = tmp_path / "notes.nii.gz"
        t1.write_text("this is not an image\n")
    elif kind == "truncated":
        data = gzip.decompress(synthetic["t1"].read_bytes())
        t1.write_bytes(gzip.compress(data[: len(data) // 2]))
    elif kind == "cut gzip":
        data = synthetic["t1"].read_bytes()
        t1.write_bytes(data[: len(data) * 2 // 3])
    elif kind == "truncated nii":
        t1 = tmp_path / "bad_t1.nii"
        data = gzip.decompress(synthetic["t1"].read_bytes())
        t1.write_bytes(data[: len(data) - 100])
    elif kind == "2D":
        write(good[20], t1)
    elif kind == "4D":
        image = sitk.JoinSeries([sitk.ReadImage(str(synthetic["t1"]))] * 3)
        sitk.WriteImage(image, str(t1))
    elif kind == "all zero":
        write(np.zeros_like(good), t1, like=good_image)
    elif kind == "NaN":
        broken = good.copy()
        broken[20, 20, 20] = np.nan
        write(broken, t1, like=good_image)
    elif kind == "Inf":
        broken = good.copy()
        broken[10, 30, 20] = np.inf
        write(broken, t1, like=good_image)
    elif kind == "label map":
        labels = np.zeros(good.shape, np.uint8)
        labels[10:20, 10:20, 10:20] = 2
        labels[12:15, 12:15, 12:15] = 4
        write(labels, t1, like=good_image)
    elif kind == "no overlap":
        write(good, t1, spacing=(2.0, 2.0, 2.0), origin=(400.0, 400.0, 400.0))
    elif kind in ("2-voxel cube", "3-voxel cube"):
        size = int(kind[0])
        write(np.random.default_rng(0).uniform(100, 500, (size,) * 3).astype(np.float32), t1)
    elif kind == "thin slab":
        write(good[18:20], t1, spacing=(2.0, 2.0, 2.0))
    elif kind == "constant":
        write(np.full_like(good, 7.5), t1, like=good_image)
    return {**synthetic, "t1": t1}


BAD_INPUTS = {
    "missing": "file not found",
    "folder": "is a folder",
    "not an image": "cannot read",
    "truncated": "truncated or corrupt",
    "cut gzip": "truncated or corrupt",
    "truncated nii": "truncated or corrupt",
    "2D": "2D image",
    "4D": "4D image",
    "all zero": "every voxel is zero",
    "NaN": "NaN or infinite",
    "Inf": "NaN or infinite",
    "label map": "looks like a label map",
    "no overlap": "do not overlap",
    "2-voxel cube": "is 2×2×2 voxels, too small to hold a brain",
    "3-voxel cube": "is 3×3×3 voxels, too small to hold a brain",
    "thin slab": "is 44×48×2 voxels, too small to hold a brain",
    "constant": "holds the one value 7.5 everywhere",
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_image(capsys, tiny_card, synthetic, tmp_path, kind):
    inputs = bad_case(synthetic, tmp_path, kind)
    output = tmp_path / "out" / "seg.nii.gz"
    argv = ["segment", "-o", output, "--report", tmp_path / "out" / "r.json", "--model", tiny_card.path,
            "--no-bias-correction"]
    for modality, path in inputs.items():
        argv += [f"--{modality}", path]
    message = run_failing(capsys, argv, output)
    assert BAD_INPUTS[kind] in message
    assert not (tmp_path / "out" / "r.json").exists()


def test_no_modality(capsys, tiny_card, tmp_path):
    message = run_failing(capsys, ["segment", "-o", tmp_path / "seg.nii.gz", "--model", tiny_card.path],
                          tmp_path / "seg.nii.gz")
    assert "give at least one of --t1, --t1c, --t2, --flair" in message


@pytest.fixture
def card_copy(tiny_card, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for path in (tiny_card.path, tiny_card.weights_path):
        shutil.copy(path, folder / path.name)
    return folder / tiny_card.path.name


def test_weights_with_a_wrong_checksum(capsys, card_copy, synthetic, tmp_path):
    weights = card_copy.parent / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    output = tmp_path / "seg.nii.gz"
    message = run_failing(capsys, ["segment", "--t1c", synthetic["t1c"], "-o", output, "--model", card_copy],
                          output)
    assert "does not match the checksum" in message


def test_card_of_another_version(capsys, card_copy, synthetic, tmp_path):
    card = json.loads(card_copy.read_text())
    card["card_format"] = 2
    card_copy.write_text(json.dumps(card))
    output = tmp_path / "seg.nii.gz"
    message = run_failing(capsys, ["segment", "--t1c", synthetic["t1c"], "-o", output, "--model", card_copy],
                          output)
    assert "format 2" in message


def test_missing_model_card(capsys, synthetic, tmp_path):
    output = tmp_path / "seg.nii.gz"
    message = run_failing(capsys, ["segment", "--t1c", synthetic["t1c"], "-o", output,
                                   "--model", tmp_path / "nothing.json"], output)
    assert "model card not found" in message


def test_one_file_for_two_sequences(capsys, synthetic, tmp_path):
    output = tmp_path / "seg.nii.gz"
    message = run_failing(capsys, ["segment", "--t2", synthetic["flair"], "--flair", synthetic["flair"], "-o", output],
                          output)
    assert "is given for --t2 and --flair; give each sequence its own image" in message


@pytest.mark.parametrize("name, expected", [("seg.txt", "must end with"), ("same", "is the --t1c input")])
def test_bad_output_path(capsys, tiny_card, synthetic, tmp_path, name, expected):
    output = synthetic["t1c"] if name == "same" else tmp_path / name
    before = output.read_bytes() if output.exists() else None
    code = main(["segment", "--t1c", str(synthetic["t1c"]), "-o", str(output), "--model", str(tiny_card.path)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert (output.read_bytes() if output.exists() else None) == before


def test_report_that_is_an_input_or_the_output(capsys, tiny_card, synthetic, tmp_path):
    output = tmp_path / "seg.nii.gz"
    argv = ["segment", "--t1c", synthetic["t1c"], "-o", output, "--model", tiny_card.path, "--no-bias-correction"]
    message = run_keeping(capsys, [*argv, "--report", synthetic["t1c"]], synthetic["t1c"])
    assert "the --report" in message and "is the --t1c input file; choose another file name" in message
    assert not output.exists()
    message = run_failing(capsys, [*argv, "--report", output], output)
    assert "is the output file; choose another file name" in message
    message = run_failing(capsys, [*argv, "--probability-map", output], output)
    assert "the --probability-map" in message and "is the output file; choose another file name" in message
    message = run_failing(capsys, [*argv, "--probability-map", tmp_path / "p.txt"], output)
    assert "probability map" in message and "must end with one of" in message


def test_scores_file_that_is_an_input(capsys, tmp_path):
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:15, 5:15, 5:15] = 2
    prediction, reference = write(labels, tmp_path / "pred.nii.gz"), write(labels, tmp_path / "ref.nii.gz")
    for flag, target in (("--prediction", prediction), ("--reference", reference)):
        message = run_keeping(capsys, ["evaluate", "--prediction", prediction, "--reference", reference,
                                       "-o", target], target)
        assert f"the scores file {target} is the {flag} file" in message


@pytest.mark.parametrize("command", ["demo", "batch"])
def test_output_folder_that_cannot_be_a_folder(capsys, tiny_card, synthetic, tmp_path, command):
    a_file = synthetic["t2"]
    argv = [command, *([tmp_path] if command == "batch" else []), "--model", tiny_card.path,
            "--no-bias-correction", "--skull-strip", "off", "--no-tta", "-o"]
    message = run_keeping(capsys, [*argv, a_file / "results"], a_file)
    assert f"cannot write output folder {a_file / 'results'}: {a_file} is not a writable folder" in message
    message = run_keeping(capsys, [*argv, a_file], a_file)
    assert f"output folder {a_file} is a file; give a folder" in message


@pytest.mark.parametrize("meta, expected", [
    ("{not json", "is not valid JSON"),
    ("[]", 'has no "channel_names" object'),
    ('{"channel_names": {"T1": "t1", "FLAIR": "flair"}}', 'has no "channel_names" object'),
    ('{"channel_names": {"0": "DWI", "1": "ADC"}}', "none of its channel names (DWI, ADC) is T1, T1Gd, T2 or FLAIR")])
def test_broken_nnunet_dataset_json(capsys, tiny_card, synthetic, tmp_path, meta, expected):
    dataset = tmp_path / "Dataset001_BraTS"
    (dataset / "imagesTr").mkdir(parents=True)
    shutil.copy(synthetic["t1c"], dataset / "imagesTr" / "BRATS_001_0000.nii.gz")
    (dataset / "dataset.json").write_text(meta)
    output = tmp_path / "results"
    message = run_failing(capsys, ["batch", dataset, "-o", output, "--model", tiny_card.path], output)
    assert f"{dataset / 'dataset.json'}" in message and expected in message


def test_batch_case_named_summary_keeps_its_report(capsys, tiny_card, synthetic, tmp_path):
    for name in ("summary", "Brats_A"):
        (tmp_path / "cases" / name).mkdir(parents=True)
        shutil.copy(synthetic["t1c"], tmp_path / "cases" / name / f"{name}_t1ce.nii.gz")
    out = tmp_path / "results"
    code = main([str(a) for a in ["batch", tmp_path / "cases", "-o", out, "--model", tiny_card.path,
                                  "--no-bias-correction", "--skull-strip", "off", "--no-tta"]])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "Brats_A.nii.gz", "Brats_A.json", "summary_2.nii.gz", "summary_2.json", "summary.json", "summary.csv"])
    assert json.loads((out / "summary_2.json").read_text())["output"] == str(out / "summary_2.nii.gz")
    assert [r["case"] for r in json.loads((out / "summary.json").read_text())["results"]] == ["Brats_A", "summary_2"]


def test_usage_errors_exit_2(capsys):
    assert main(["segment", "--t1"]) == 2
    assert main(["segment", "--t1", "x.nii.gz", "-o", "y.nii.gz", "--min-cluster-ml", "-1"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["evaluate", "--prediction", "p.nii.gz"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_evaluate_bad_inputs(capsys, synthetic, tmp_path):
    labels = np.zeros((40, 48, 44), np.uint8)
    labels[10:20, 10:20, 10:20] = 4
    reference = write(labels, tmp_path / "ref.nii.gz", spacing=(2.0, 2.0, 2.0))
    other_grid = write(labels[:, :, :40], tmp_path / "pred.nii.gz", spacing=(2.0, 2.0, 2.0))
    an_image = write((np.indices(labels.shape).sum(axis=0) * 3).astype(np.int16), tmp_path / "image.nii.gz",
                     spacing=(2.0, 2.0, 2.0))
    scores = tmp_path / "scores.json"
    for argv, expected in (
            (["--prediction", tmp_path / "none.nii.gz", "--reference", reference], "file not found"),
            (["--prediction", reference, "--reference", tmp_path], "is a folder; give a label map file"),
            (["--prediction", other_grid, "--reference", reference], "not on the same grid"),
            (["--prediction", synthetic["t1"], "--reference", reference], "non-integer values"),
            (["--prediction", reference, "--reference", reference, "--reference-convention", "brats2023"],
             "not part of the brats2023 convention"),
            (["--prediction", reference, "--reference", an_image], "looks like an image, not a label map")):
        message = run_failing(capsys, ["evaluate", *argv, "-o", scores], scores)
        assert expected in message


def test_the_installed_command_reports_without_traceback(tmp_path):
    """The real entry point in a fresh process: exit status and stderr as a user sees them."""
    result = subprocess.run([sys.executable, "-m", "braintumorseg", "segment", "--t1", str(tmp_path / "no.nii.gz"),
                             "-o", str(tmp_path / "seg.nii.gz")], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2
    missing = tmp_path / "no.nii.gz"
    assert result.stderr.strip() == f"braintumorseg: error: T1: file not found: {missing}. Check the path."
    assert not (tmp_path / "seg.nii.gz").exists()
