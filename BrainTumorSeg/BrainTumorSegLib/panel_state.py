"""What the panel shows, as plain data: the Segment/Cancel button, the status line, the progress bar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from braintumorseg.modalities import MODALITIES
from braintumorseg.protocol import STAGE_TEXT
from braintumorseg.reliability import subset_warnings
from braintumorseg.resources import DEFAULT_MODEL

SEGMENT, CANCEL, CANCELLING = "Segment", "Cancel", "Cancelling…"

@dataclass(frozen=True)
class ButtonState:
    text: str
    enabled: bool
    tooltip: str


def button_state(problems: list[str], running: bool, cancelling: bool = False) -> ButtonState:
    """Segment when idle (enabled only without problems), Cancel while running."""
    if cancelling:
        return ButtonState(CANCELLING, False, "Stopping the segmentation.")
    if running:
        return ButtonState(CANCEL, True, "Stop the segmentation; the scene is left as it was.")
    if problems:
        return ButtonState(SEGMENT, False, problems[0])
    return ButtonState(SEGMENT, True, "Segment necrotic core, edema and enhancing tumor.")


def status_text(problems: list[str], running: bool, stage: str = "", notes: Sequence[str] = (),
                outcome: str = "") -> str:
    """The status line: the current stage while running; when idle the first input problem, else the last
    run's outcome (kept until the inputs change), else what to do next with what the model's validation
    says of the selected sequences."""
    if running:
        return f"{STAGE_TEXT.get(stage, stage.capitalize() or 'Starting')}…"
    if problems:
        return problems[0]
    if outcome:
        return outcome
    return " ".join(["Ready: click Segment."] + [note[:1].upper() + note[1:] for note in notes])


def model_argument(name: str, cards: dict[str, Path]) -> str:
    """The engine's --model for the panel's choice: "" for the default model, which the engine then pairs with the
    model for scanner-native exams; the card's path for any other installed model (used for every input)."""
    if name == DEFAULT_MODEL or name not in cards:
        return ""
    return str(cards[name])


def sequence_notes(card_path: Path, selected: list[str]) -> list[str]:
    """Before a run: the card's validation warnings for the selected sequences, read without PyTorch.

    An unreadable card gives none here; Segment then reports it with the engine's own sentence.
    """
    try:
        card = json.loads(Path(card_path).read_text())
        return subset_warnings(card.get("channels", list(MODALITIES)), card.get("metrics", {}), selected)
    except (OSError, ValueError, TypeError, AttributeError):
        return []


def progress_percent(fraction: float) -> int:
    return int(round(100 * min(1.0, max(0.0, fraction))))


def stage_summary(stage_seconds: dict[str, float], total_seconds: float, processing: str = "") -> str:
    """The status after a run: total time and the time of each stage, then what preprocessing did (which sequences
    were registered and how the check rated them, how the skull was stripped)."""
    parts = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in stage_seconds.items())
    text = f"Done in {total_seconds:.1f} s ({parts})." if parts else f"Done in {total_seconds:.1f} s."
    return f"{text} {processing}" if processing else text
