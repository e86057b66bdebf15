"""`evaluate --clinical-like SEED`: pristine and clinical-like exams of the same cases scored in one run."""

from __future__ import annotations

import csv
import json

from training.cli import main
from training_synthetic import brats_case


def test_pristine_and_clinical_like_side_by_side(tmp_path, tiny_card, capsys):
    data = tmp_path / "data"
    brats_case(data, "Brats18_A_1", seed=0)
    out = tmp_path / "eval"
    argv = ["evaluate", str(data), "--model", str(tiny_card.path), "--out", str(out), "--subsets", "all",
            "--no-bias-correction", "--no-tta", "--clinical-like", "3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| clinical-like |" in printed and "| Brats18_A_1 |" in printed
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert {(r["condition"], r["case"]) for r in rows} == {("pristine", "Brats18_A_1"),
                                                          ("clinical-like", "Brats18_A_1")}
    result = json.loads((out / "means.json").read_text())
    exam = out / "clinical-like-3" / "Brats18_A_1"
    assert json.loads((exam / "exam.json").read_text())["seed"] == 3
    clinical = result["clinical_like"]
    assert clinical["seed"] == 3 and clinical["means"]["all"]["WT"]["cases"] == 1
    by_condition = {r["condition"]: float(r["WT_dice"]) for r in rows}
    assert clinical["cases"]["Brats18_A_1"]["clinical-like"]["WT_dice"] == by_condition["clinical-like"]
    assert result["means"]["all"]["WT"]["dice_mean"] == round(by_condition["pristine"], 4)  # pristine stays "means"
    # A second run keeps the exams made with the same seed.
    written = (exam / "Brats18_A_1_t2.nii.gz").stat().st_mtime_ns
    assert main(argv) == 0
    assert (exam / "Brats18_A_1_t2.nii.gz").stat().st_mtime_ns == written


def test_the_shipped_pair_is_evaluated_with_native_model(tmp_path, tiny_card):
    """--native-model adds the model for scanner-native exams; means.json names both and records its checksum."""
    from conftest import make_tiny_card
    native = make_tiny_card(tmp_path / "native", seed=1, name="tiny-native")
    data = tmp_path / "data"
    brats_case(data, "Brats18_A_1", seed=0)
    out = tmp_path / "eval"
    assert main(["evaluate", str(data), "--model", str(tiny_card.path), "--native-model", str(native.path),
                 "--out", str(out), "--subsets", "all", "--no-bias-correction", "--no-tta", "--clinical-like", "3"]) == 0
    result = json.loads((out / "means.json").read_text())
    assert result["model"] == "tiny-test 0.0.1 (tiny-native 0.0.1 for scanner-native exams)"
    assert (result["sha256"], result["native_sha256"]) == (tiny_card.sha256, native.sha256)
