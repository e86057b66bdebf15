"""The commands end to end: segment (JSON progress), batch past a broken case, evaluate, demo on the sample."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.cli import main
from braintumorseg.inference import select_device
from braintumorseg.resources import default_model_card

from conftest import synthetic_case, write_label_maps


def grid(image: sitk.Image) -> tuple:
    return (image.GetSize(), np.round(image.GetSpacing(), 5).tolist(), np.round(image.GetOrigin(), 4).tolist(),
            np.round(image.GetDirection(), 6).tolist())


def test_segment_with_json_progress(capsys, tiny_card, synthetic, tmp_path):
    output, report = tmp_path / "seg.nii.gz", tmp_path / "report.json"
    code = main(["segment", "--t1c", str(synthetic["t1c"]), "--flair", str(synthetic["flair"]), "-o", str(output),
                 "--report", str(report), "--model", str(tiny_card.path), "--json-progress", "--tta",
                 "--threads", "1", "--label-convention", "brats2023", "--min-cluster-ml", "0", "--fp32"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert all(set(e) == {"stage", "fraction", "seconds"} for e in events)
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and events[-1]["stage"] == "done" and events[-1]["fraction"] == 1.0
    assert {"bias correction", "inference", "write output"} <= {e["stage"] for e in events}
    assert grid(sitk.ReadImage(str(output))) == grid(sitk.ReadImage(str(synthetic["t1c"])))
    saved = json.loads(report.read_text())
    assert saved["label_convention"] == "brats2023" and set(saved["inputs"]) == {"t1c", "flair"}
    assert saved["device"] == select_device("auto").type and saved["precision"] == "float32"


def test_probability_map_is_on_the_output_grid_and_holds_the_whole_tumour(tiny_card, synthetic, tmp_path):
    """Whole-tumour probability in percent; every voxel labelled tumour is one the network gave over 50 %."""
    output, probability, report = tmp_path / "seg.nii.gz", tmp_path / "wt.nii.gz", tmp_path / "r.json"
    code = main(["segment", "--t1c", str(synthetic["t1c"]), "--flair", str(synthetic["flair"]), "-o", str(output),
                 "--probability-map", str(probability), "--report", str(report), "--model", str(tiny_card.path),
                 "--no-bias-correction", "--no-tta", "--fp32"])
    assert code == 0
    percent, labels = sitk.ReadImage(str(probability)), sitk.ReadImage(str(output))
    assert grid(percent) == grid(labels) and percent.GetPixelID() == sitk.sitkUInt8
    p, tumour = sitk.GetArrayFromImage(percent), sitk.GetArrayFromImage(labels) > 0
    assert p.max() <= 100 and tumour.any() and (p[tumour] >= 50).all()
    assert p.min() < 50 <= p.max()
    assert json.loads(report.read_text())["probability_map"] == str(probability)


def test_batch_continues_past_a_broken_case(capsys, tiny_card, tmp_path):
    root = tmp_path / "cases"
    for name in ("Brats18_A_1", "Brats18_B_1", "Brats18_C_1"):
        folder = root / name
        folder.mkdir(parents=True)
        paths = synthetic_case(folder, seed=len(name))
        for modality, path in paths.items():
            alias = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}[modality]
            path.rename(folder / f"{name}_{alias}.nii.gz")
    broken = root / "Brats18_B_1" / "Brats18_B_1_t1ce.nii.gz"
    image = sitk.ReadImage(str(broken)) * 0.0
    sitk.WriteImage(image, str(broken))
    for other in ("t1", "t1ce", "t2"):  # case C: FLAIR alone, which the card's validation says little of
        (root / "Brats18_C_1" / f"Brats18_C_1_{other}.nii.gz").unlink()
    model = shutil.copytree(tiny_card.path.parent, tmp_path / "model") / tiny_card.path.name
    card = json.loads(model.read_text())
    card["metrics"] = json.loads(default_model_card().read_text())["metrics"]  # the shipped model's validation
    model.write_text(json.dumps(card))
    out = tmp_path / "results"
    code = main(["batch", str(root), "-o", str(out), "--model", str(model), "--no-bias-correction"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Brats18_B_1: bad input" in captured.err and "every voxel is zero" in captured.err
    assert "Traceback" not in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 2, "bad input": 1, "error": 0}
    assert [r["case"] for r in summary["results"]] == ["Brats18_A_1", "Brats18_B_1", "Brats18_C_1"]
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "Brats18_A_1.nii.gz", "Brats18_A_1.json", "Brats18_C_1.nii.gz", "Brats18_C_1.json",
        "summary.json", "summary.csv"])
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "bad input", "ok"]
    assert float(rows[0]["whole_tumour_ml"]) == summary["results"][0]["volumes_ml"]["whole_tumour"]
    assert "less reliable" not in rows[0]["warnings"] and rows[2]["warnings"].startswith("from FLAIR alone")
    assert rows[2]["warnings"].split(" | ") == summary["results"][2]["warnings"]
    assert summary["results"][2]["warnings"] == json.loads((out / "Brats18_C_1.json").read_text())["warnings"]
    assert f"warning(s) in {out / 'Brats18_C_1.json'}" in captured.out
    reference = sitk.ReadImage(str(root / "Brats18_A_1" / "Brats18_A_1_t1ce.nii.gz"))
    assert grid(sitk.ReadImage(str(out / "Brats18_A_1.nii.gz"))) == grid(reference)


def test_batch_refuses_a_folder_without_cases(capsys, tiny_card, tmp_path):
    (tmp_path / "empty").mkdir()
    code = main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", str(tiny_card.path)])
    assert code == 2 and "no case found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_evaluate_table_json_and_conventions(capsys, tmp_path):
    reference = np.zeros((20, 20, 20), np.uint8)
    reference[4:14, 4:14, 4:14] = 2
    reference[6:10, 6:10, 6:10] = 1
    reference[7:9, 7:9, 7:9] = 4
    prediction = np.where(reference == 4, 3, reference).astype(np.uint8)  # same labels in brats2023
    prediction[12:14] = 0                                                     # misses two edema slices
    paths = write_label_maps(tmp_path, {"ref": reference, "pred": prediction}, (1.0, 1.0, 2.0))
    scores_path = tmp_path / "scores.json"
    code = main(["evaluate", "--prediction", str(paths["pred"]), "--reference", str(paths["ref"]),
                 "--prediction-convention", "brats2023", "--reference-convention", "brats2021",
                 "-o", str(scores_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "WT whole tumour" in out and "Dice" in out and "HD95" in out
    scores = json.loads(scores_path.read_text())["scores"]
    assert scores["TC"] == {"dice": 1.0, "hd95": 0.0} and scores["ET"] == {"dice": 1.0, "hd95": 0.0}
    assert scores["WT"]["dice"] == pytest.approx(2 * 800 / 1800, abs=1e-6)
    assert main(["evaluate", "--prediction", str(paths["pred"]), "--reference", str(paths["ref"]),
                 "--prediction-convention", "brats2023", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scores"] == scores


@pytest.fixture(scope="module")
def demo_run(tiny_card, tmp_path_factory):
    """The demo on the bundled sample case with N4 on (the one full-size run of these tests).

    capsys is per test, so the module-scoped run captures its output with redirects."""
    folder = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["demo", "-o", str(folder), "--model", str(tiny_card.path)])
    return code, folder, out.getvalue(), err.getvalue()


def test_demo_end_to_end_on_the_sample_case(demo_run, sample):
    code, folder, out, err = demo_run
    assert code == 0, err
    segmentation = folder / "TCGA-FG-6692_segmentation.nii.gz"
    labels = sitk.ReadImage(str(segmentation))
    assert grid(labels) == grid(sitk.ReadImage(str(sample["t1c"])))
    assert set(np.unique(sitk.GetArrayFromImage(labels)).tolist()) <= {0, 1, 2, 4}
    report = json.loads((folder / "TCGA-FG-6692_report.json").read_text())
    assert report["stage_seconds"]["bias correction"] > 0
    assert set(report["volumes_ml"]) == {"necrotic_core", "edema", "enhancing", "tumour_core", "whole_tumour"}
    voxels = np.count_nonzero(sitk.GetArrayFromImage(labels))
    assert report["volumes_ml"]["whole_tumour"] == pytest.approx(voxels / 1000, abs=1e-3)  # 1 mm voxels
    evaluation = json.loads((folder / "TCGA-FG-6692_evaluation.json").read_text())
    assert set(evaluation["scores"]) == {"WT", "TC", "ET"}
    assert (folder / "TCGA-FG-6692_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "agreement with the bundled consensus label" in out and "WT whole tumour" in out


def test_overlay_shows_the_slices_with_most_tumour(sample, tmp_path):
    from braintumorseg.overlay import overlay_png, tumour_slices
    label = sitk.ReadImage(str(sample["label"]))
    slices = overlay_png(sitk.ReadImage(str(sample["t1c"])), label, tmp_path / "o.png", "brats2021")
    classes = sitk.GetArrayFromImage(sitk.DICOMOrient(label, "LPS"))
    assert slices == tumour_slices(classes)
    assert slices["axial"] == int(np.argmax((classes > 0).sum(axis=(1, 2))))
    assert (tmp_path / "o.png").stat().st_size > 10_000


def test_terminal_progress_bar_redraws_one_line():
    from braintumorseg.progress import ProgressBar
    stream = io.StringIO()
    bar = ProgressBar(stream, label="[1/2] case")
    for stage, fraction in (("load inputs", 0.0), ("inference", 0.5), ("done", 1.0)):
        bar(stage, fraction)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    assert " 50% inference" in text and "100% done" in text and "[1/2] case [" in text
