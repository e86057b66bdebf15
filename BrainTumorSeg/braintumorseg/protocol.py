"""The boundary between the engine's command line and the programs that run it (the Slicer panel): the stages
and their share of a run, the JSON progress line, the error line and the exit codes. Both sides import this.

Progress (`segment --json-progress`): stdout carries only JSON lines, one object per event,

    {"stage": "bias correction", "fraction": 0.17, "seconds": 3.412}

`stage` is the stage starting or just finished, `fraction` the share of the whole run done (0 to 1, never
decreasing), `seconds` the time since the command started. A successful run ends with stage "done", fraction 1
and exit status 0. Warnings and errors go to stderr as plain text; the error is the last line, `error_line`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
PROG = "braintumorseg"
ERROR_PREFIX = f"{PROG}: error: "


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its name in progress lines and reports, its share of a run, and what it means to a user."""

    name: str
    weight: float
    text: str


REFIT_BIAS = "bias correction without the tumour"  # models trained so only (`ModelCard.n4_without_tumour`)
STAGES = (
    Stage("load inputs", 0.05, "Reading the volumes"),
    Stage("load model", 0.03, "Loading the model"),
    Stage("align to reference", 0.07, "Aligning the volumes"),
    Stage("brain mask", 0.02, "Finding the brain"),
    Stage("bias correction", 0.27, "Correcting intensity bias (the longest step)"),
    Stage("normalization", 0.03, "Normalizing intensities"),
    Stage(REFIT_BIAS, 0.12, "Finding the tumor, then correcting intensity bias without it"),
    Stage("inference", 0.31, "Segmenting the tumor"),
    Stage("post-processing", 0.06, "Cleaning up the result"),
    Stage("write output", 0.04, "Saving the result"),
)
DONE = Stage("done", 0.0, "Finishing")
STAGE_WEIGHTS = {stage.name: stage.weight for stage in STAGES}
STAGE_TEXT = {stage.name: stage.text for stage in STAGES + (DONE,)}


@dataclass(frozen=True)
class Progress:
    stage: str
    fraction: float
    seconds: float | None = None


def progress_line(stage: str, fraction: float, seconds: float) -> str:
    """One progress event as its JSON line (without the newline)."""
    return json.dumps({"stage": stage, "fraction": round(float(fraction), 4), "seconds": round(float(seconds), 3)})


def parse_progress_line(line: str) -> Progress | None:
    """The event a progress line holds, or None for any other output."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    try:
        seconds = data.get("seconds")
        return Progress(str(data["stage"]), min(1.0, max(0.0, float(data.get("fraction", 0.0)))),
                        None if seconds is None else float(seconds))
    except (TypeError, ValueError):
        return None


def error_line(message: str) -> str:
    """How the command line states a user's mistake on stderr: one line, the last one it prints."""
    return f"{ERROR_PREFIX}{message}"


def error_message(stderr_text: str, returncode: int) -> str:
    """The engine's own sentence from its stderr (its last line), or a plain one when it died without one."""
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    if lines:
        return lines[-1].removeprefix(ERROR_PREFIX).removeprefix(f"{PROG}: ")
    return f"the segmentation stopped unexpectedly (exit code {returncode}); see the Python console for details."
