"""The panel's behaviour that needs no Qt: auto-fill from volume names, button and status, dependency check."""

from __future__ import annotations

import json

import pytest

from BrainTumorSegLib.autofill import autofill
from BrainTumorSegLib.dependencies import DECLINED, Requirement, install_question, missing, read_requirements
from BrainTumorSegLib.panel_state import (CANCEL, CANCELLING, SEGMENT, button_state, progress_percent,
                                          sequence_notes, stage_summary, status_text)
from braintumorseg.resources import default_model_card

EMPTY = {"t1": None, "t1c": None, "t2": None, "flair": None}


@pytest.mark.parametrize("names, expected", [
    # BraTS 2013-2015 (VSD names), 2017-2021, 2023 (t1n/t1c/t2w/t2f)
    (["VSD.Brain.XX.O.MR_T1.54512", "VSD.Brain.XX.O.MR_T1c.54513", "VSD.Brain.XX.O.MR_T2.54514",
      "VSD.Brain.XX.O.MR_Flair.54515"], ("t1", "t1c", "t2", "flair")),
    (["BraTS20_Training_001_t1", "BraTS20_Training_001_t1ce", "BraTS20_Training_001_t2",
      "BraTS20_Training_001_flair"], ("t1", "t1c", "t2", "flair")),
    (["BraTS-GLI-00000-000-t1n", "BraTS-GLI-00000-000-t1c", "BraTS-GLI-00000-000-t2w",
      "BraTS-GLI-00000-000-t2f"], ("t1", "t1c", "t2", "flair")),
    # clinical series names, any case
    (["Ax T1 pre", "AX T1 POST", "Ax T2 FSE", "Ax FLAIR"], ("t1", "t1c", "t2", "flair")),
    (["sag t1", "T1+C", "t2", "t2_flair"], ("t1", "t1c", "t2", "flair")),
    (["TCGA-FG-6692 T1", "TCGA-FG-6692 T1Gd", "TCGA-FG-6692 T2", "TCGA-FG-6692 FLAIR"],
     ("t1", "t1c", "t2", "flair")),
])
def test_autofill_recognises_brats_and_clinical_names(names, expected):
    volumes = [(f"id{i}", name) for i, name in enumerate(names)]
    selection = autofill(EMPTY, volumes)
    assert [selection[m] for m in ("t1", "t1c", "t2", "flair")] == [f"id{expected.index(m)}" for m in
                                                                    ("t1", "t1c", "t2", "flair")]


def test_autofill_skips_label_maps_and_unknown_names():
    volumes = [("a", "BraTS20_Training_001_seg"), ("b", "MRHead"), ("c", "case_flair")]
    assert autofill(EMPTY, volumes) == {"t1": None, "t1c": None, "t2": None, "flair": "c"}


def test_autofill_never_overrides_the_user():
    volumes = [("t1", "case_t1"), ("t1ce", "case_t1ce"), ("other", "my favourite")]
    # A selector already holding a volume keeps it, even a volume whose name says otherwise.
    chosen = autofill({**EMPTY, "t1c": "other"}, volumes)
    assert chosen["t1c"] == "other" and chosen["t1"] == "t1"
    # A selector the user cleared on purpose stays empty.
    assert autofill(EMPTY, volumes, user_chosen={"t1"})["t1"] is None
    # A volume already used elsewhere is not used twice.
    assert autofill({**EMPTY, "t2": "t1"}, volumes)["t1"] is None


def test_autofill_fills_new_volumes_as_they_arrive():
    selection = autofill(EMPTY, [("x", "case_t2")])
    selection = autofill(selection, [("x", "case_t2"), ("y", "case_flair")])
    assert selection == {"t1": None, "t1c": None, "t2": "x", "flair": "y"}


def test_button_is_segment_then_cancel():
    problem = "Select at least one MRI volume: T1, T1Gd, T2 or FLAIR."
    idle_blocked = button_state([problem], running=False)
    assert (idle_blocked.text, idle_blocked.enabled, idle_blocked.tooltip) == (SEGMENT, False, problem)
    idle = button_state([], running=False)
    assert (idle.text, idle.enabled) == (SEGMENT, True)
    running = button_state([], running=True)
    assert (running.text, running.enabled) == (CANCEL, True)
    stopping = button_state([], running=True, cancelling=True)
    assert (stopping.text, stopping.enabled) == (CANCELLING, False)


def test_status_line_speaks_plainly():
    assert status_text(["The T2 volume 'x' does not overlap ..."], running=False).startswith("The T2 volume")
    assert status_text([], running=False) == "Ready: click Segment."
    assert status_text([], running=True, stage="bias correction") == "Correcting intensity bias (the longest step)…"
    assert status_text([], running=True, stage="") == "Starting…"
    assert progress_percent(0.456) == 46 and progress_percent(1.7) == 100 and progress_percent(-1) == 0
    assert stage_summary({"load inputs": 0.42, "inference": 12.0}, 13.04) == (
        "Done in 13.0 s (load inputs 0.4 s, inference 12.0 s).")


def test_before_a_run_the_status_line_says_what_the_selected_sequences_cannot_support(tmp_path):
    notes = sequence_notes(default_model_card(), ["flair"])
    assert len(notes) == 1 and notes[0].startswith("from FLAIR alone the tumour core and enhancing tumour")
    assert status_text([], running=False, notes=notes) == "Ready: click Segment. F" + notes[0][1:]
    assert sequence_notes(default_model_card(), ["t1", "t1c", "t2", "flair"]) == []
    assert status_text(["The T2 volume 'x' does not overlap ..."], running=False, notes=notes).startswith("The T2")
    card = json.loads(default_model_card().read_text())
    del card["channels"]  # the engine's default: all four
    (tmp_path / "no_channels.json").write_text(json.dumps(card))
    assert sequence_notes(tmp_path / "no_channels.json", ["flair"]) == notes
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    for unreadable in ("missing.json", "broken.json", "list.json"):
        assert sequence_notes(tmp_path / unreadable, ["flair"]) == []  # Segment reports the card itself


def test_a_runs_outcome_stays_on_the_status_line_until_an_input_problem_replaces_it():
    outcome = "Done in 13.0 s (inference 9.0 s). A separate 1.5 mL cluster of edema ..."
    assert status_text([], running=False, notes=["from FLAIR alone ..."], outcome=outcome) == outcome
    assert status_text(["Select at least one volume."], running=False, outcome=outcome) == "Select at least one volume."
    assert status_text([], running=True, stage="inference", outcome=outcome) == "Segmenting the tumor…"


def test_requirements_and_missing_packages():
    names = [r.name for r in read_requirements()]
    assert names == ["torch", "monai", "safetensors", "scipy"]
    assert missing(read_requirements()) == []  # all installed in this environment
    absent = Requirement("surely-not-a-real-package-xyz", ">=1")
    assert missing([absent, Requirement("numpy", "")]) == [absent]
    assert absent.line == "surely-not-a-real-package-xyz>=1"
    question = install_question([absent])
    assert "surely-not-a-real-package-xyz" in question and question.rstrip().endswith("meanwhile.")
    assert "cannot run" in DECLINED
