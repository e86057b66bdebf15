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
