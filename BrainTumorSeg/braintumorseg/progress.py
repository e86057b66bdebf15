"""Progress reporters for the pipeline's callback: a terminal bar and JSON lines for other programs."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from .protocol import progress_line


class ProgressBar:
    """Redraws one line on a terminal: a bar, the percentage, the current stage and the elapsed time."""

    def __init__(self, stream: TextIO = sys.stderr, label: str = ""):
        self.stream = stream
        self.label = label
        self.start = time.perf_counter()
        self._drawn = False

    def __call__(self, stage: str, fraction: float) -> None:
        elapsed = time.perf_counter() - self.start
        width = max(10, min(30, shutil.get_terminal_size((80, 20)).columns - 50))
        filled = int(round(width * fraction))
        prefix = f"{self.label} " if self.label else ""
        line = f"{prefix}[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {stage:<20.20} {elapsed:6.1f} s"
        self.stream.write("\r" + line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line (call once, whatever happened)."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class JsonProgress:
    """Writes one progress line (`protocol.progress_line`) per event."""

    def __init__(self, stream: TextIO = sys.stdout):
        self.stream = stream
        self.start = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        self.stream.write(progress_line(stage, fraction, time.perf_counter() - self.start) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Nothing to finish: every line is complete when written."""
