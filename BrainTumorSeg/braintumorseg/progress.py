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


def duration(seconds: float) -> str:
    """Seconds as h:mm:ss."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class CohortProgress:
    """A cohort's progress with its expected time left: on a terminal one bar redrawn on the stream (cases
    done and failed, the current case's stage); elsewhere one plain line per finished case.

    The time left is the wall time per case run so far (cases kept from an earlier run excluded) times the
    cases left, so it accounts for worker processes overlapping cases.
    """

    def __init__(self, stream: TextIO = sys.stderr, tty: bool | None = None):
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.total = self.done = self.failed = self.ran = 0
        self.current, self.fraction = "", 0.0
        self.start = time.perf_counter()
        self._drawn = False

    def plan(self, total: int) -> None:
        """The number of cases of this run (those kept from an earlier run included); restarts the clock."""
        self.total, self.start = total, time.perf_counter()

    def stage(self, case: str, stage: str, fraction: float) -> None:
        """Progress inside the current case (one case at a time in this process)."""
        self.current, self.fraction = f"{case} {stage}", fraction
        if self.tty:
            self._draw()

    def case_finished(self, failed: bool, kept: bool) -> None:
        """Count one case: failed or not, kept from an earlier run or run now."""
        self.done += 1
        self.failed += failed
        self.ran += not kept
        self.current, self.fraction = "", 0.0
        if self.tty:
            self._draw()
        elif not kept:
            self.stream.write(f"progress: {self.line()}\n")
            self.stream.flush()

    def seconds_left(self) -> float | None:
        """Expected seconds until every case is done, or None before a case ran."""
        progressed = self.ran + self.fraction
        if progressed < 0.05:
            return None
        return (time.perf_counter() - self.start) / progressed * max(0.0, self.total - self.done - self.fraction)

    def line(self) -> str:
        left = self.seconds_left()
        failed = f", {self.failed} failed" if self.failed else ""
        eta = f", about {duration(left)} left" if left is not None and self.done < self.total else ""
        return (f"{self.done}/{self.total} cases{failed}, {duration(time.perf_counter() - self.start)} elapsed"
                f"{eta}")

    def clear(self) -> None:
        """Erase the bar so that a line can be printed (a no-op off a terminal)."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _draw(self) -> None:
        width = 20
        share = (self.done + self.fraction) / self.total if self.total else 1.0
        filled = int(round(width * share))
        current = f" | {self.current}" if self.current else ""
        text = f"[{'#' * filled}{'.' * (width - filled)}] {self.line()}{current}"
        columns = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r\033[K" + text[:columns - 1])
        self.stream.flush()
        self._drawn = True
