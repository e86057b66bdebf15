"""The boundary between the engine and the programs that run it: progress lines, the error line, the stages."""

from __future__ import annotations

import io

from braintumorseg.progress import JsonProgress
from braintumorseg.protocol import (DONE, STAGE_TEXT, STAGE_WEIGHTS, STAGES, Progress, error_line, error_message,
                                    parse_progress_line, progress_line)


def test_a_progress_line_reads_back_as_written():
    line = progress_line("inference", 0.61234, 12.5)
    assert "\n" not in line
    assert parse_progress_line(line + "\n") == Progress("inference", 0.6123, 12.5)
    stream = io.StringIO()
    JsonProgress(stream)("bias correction", 0.5)
    assert parse_progress_line(stream.getvalue()).stage == "bias correction"


def test_other_output_is_not_progress():
    for line in ("Loading weights...\n", '{"other": 1}', "[1, 2]", '{"stage": "x", "fraction": "half"}', ""):
        assert parse_progress_line(line) is None, line
    assert parse_progress_line('{"stage": "x", "fraction": 7}').fraction == 1.0  # clamped


def test_the_error_line_gives_back_the_engine_sentence():
    sentence = "FLAIR: every voxel is zero; this is an empty volume."
    assert error_message(f"some warning\n{error_line(sentence)}\n", 2) == sentence
    assert error_message("braintumorseg: internal error (ValueError: x). This is a bug", 1).startswith(
        "internal error (ValueError")
    assert "exit code 1" in error_message("", 1)


def test_every_stage_has_a_share_and_a_text():
    assert abs(sum(STAGE_WEIGHTS.values()) - 1.0) < 1e-9
    assert len({stage.name for stage in STAGES}) == len(STAGES)
    assert set(STAGE_TEXT) == set(STAGE_WEIGHTS) | {DONE.name}
    assert all(text and text[0].isupper() for text in STAGE_TEXT.values())
