"""What the panel shows without Qt: the Segment/Cancel button and the status line."""

from __future__ import annotations

import json

from braintumorseg.resources import default_model_card
from BrainTumorSegLib.panel_state import (
    CANCEL,
    CANCELLING,
    SEGMENT,
    button_state,
    progress_percent,
    sequence_notes,
    stage_summary,
    status_text,
)

EMPTY = {"t1": None, "t1c": None, "t2": None, "flair": None}


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


def test_the_default_model_choice_leaves_the_engine_its_pair(tmp_path):
    """brats-segresnet in the panel is the engine's shipped pair (no --model); another installed card is given as it is."""
    from BrainTumorSegLib.panel_state import model_argument
    from braintumorseg.resources import model_cards
    cards = {"brats-segresnet": tmp_path / "a.json", "other": tmp_path / "b.json"}
    assert model_argument("brats-segresnet", cards) == ""
    assert model_argument("other", cards) == str(tmp_path / "b.json")
    assert model_argument("gone", cards) == ""
    assert {"brats-segresnet", "brats-segresnet-native"} <= set(model_cards())
