"""Running the engine on files: in a separate process polled by the panel, or in-process and synchronously."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from braintumorseg.protocol import error_message, parse_progress_line
from braintumorseg.settings import RunSettings

# The folder that holds the `braintumorseg` engine package (next to this package in the module folder).
ENGINE_PARENT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class EngineRequest:
    """One run of the engine: input files by modality, where to write, and the settings."""

    inputs: dict[str, Path]
    output: Path
    report: Path
    settings: RunSettings
    probability: Path | None = None  # where the whole-tumour probability map goes, when one is asked for


class RunState(Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class RunStatus:
    """Where a run is: state, current stage, overall fraction, seconds since start, error message if it failed."""

    state: RunState = RunState.RUNNING
    stage: str = ""
    fraction: float = 0.0
    elapsed: float = 0.0
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state is not RunState.RUNNING


def engine_command(request: EngineRequest, python: str | os.PathLike) -> list[str]:
    """The command line that runs the engine's `segment` command for a request."""
    command = [str(python), "-m", "braintumorseg.cli", "segment"]
    for modality, path in request.inputs.items():
        command += [f"--{modality}", str(path)]
    command += ["--output", str(request.output), "--report", str(request.report), *request.settings.to_argv(),
                "--json-progress"]
    if request.probability is not None:
        command += ["--probability-map", str(request.probability)]
    return command


class ProcessRunner:
    """Runs the engine command line in its own process group; `poll()` never blocks, so a timer can call it."""

    def __init__(self, python: str | os.PathLike = sys.executable, kill_timeout: float = 5.0):
        self.python = str(python)
        self.kill_timeout = kill_timeout
        self._process: subprocess.Popen | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._stderr_path: Path | None = None
        self._status = RunStatus()
        self._cancelled = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, request: EngineRequest) -> None:
        """Start the engine in the background; the request's output folder must exist."""
        if self._process is not None and self._process.poll() is None:
            raise RuntimeError("a segmentation is already running")
        self._status = RunStatus()
        self._cancelled = False
        self._lines = queue.Queue()
        self._stderr_path = Path(request.report).with_name("engine-stderr.txt")
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ENGINE_PARENT)] + [p for p in [environment.get("PYTHONPATH", "")] if p])
        environment["PYTHONUNBUFFERED"] = "1"
        with open(self._stderr_path, "wb") as stderr:
            self._process = subprocess.Popen(
                engine_command(request, self.python), stdout=subprocess.PIPE, stderr=stderr,
                stdin=subprocess.DEVNULL, env=environment, **_new_process_group())
        self._reader = threading.Thread(target=self._read_stdout, args=(self._process,), daemon=True)
        self._reader.start()

    def _read_stdout(self, process: subprocess.Popen) -> None:
        for raw in iter(process.stdout.readline, b""):
            self._lines.put(raw.decode("utf-8", errors="replace"))
        process.stdout.close()

    def poll(self) -> RunStatus:
        """Take in the progress printed since the last call and return the current status."""
        if self._process is None or self._status.finished:
            return self._status
        self._drain()
        returncode = self._process.poll()
        if returncode is None:
            return self._status
        self._reader.join(timeout=5)
        self._drain()
        if self._cancelled:
            self._status.state = RunState.CANCELLED
        elif returncode == 0:
            self._status.state = RunState.SUCCEEDED
            self._status.fraction = 1.0
        else:
            self._status.state = RunState.FAILED
            self._status.message = error_message(self._stderr_text(), returncode)
        return self._status

    def _drain(self) -> None:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            progress = parse_progress_line(line)
            if progress is None:
                continue
            self._status.stage, self._status.fraction = progress.stage, progress.fraction
            if progress.seconds is not None:
                self._status.elapsed = progress.seconds

    def _stderr_text(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace") if self._stderr_path else ""
        except OSError:
            return ""

    def cancel(self) -> None:
        """Stop the engine and every process it started; returns once they are gone."""
        if self._process is None or self._process.poll() is not None:
            return
        self._cancelled = True
        _kill_tree(self._process, self.kill_timeout)
        self.poll()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> RunStatus:
        """Poll until the run ends (or the timeout passes, which cancels it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll().finished:
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                break
            time.sleep(interval)
        return self._status


def _new_process_group() -> dict:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _kill_tree(process: subprocess.Popen, timeout: float) -> None:
    """Terminate the process group (POSIX) or tree (Windows), escalating to a hard kill."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, check=False)
        process.wait(timeout)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue


class InProcessRunner:
    """Runs the engine's Pipeline in this process (batch use and tests); `start` returns when it is done."""

    def __init__(self) -> None:
        self._status = RunStatus()

    def start(self, request: EngineRequest) -> None:
        from braintumorseg.errors import InputError
        from braintumorseg.pipeline import Pipeline

        self._status = RunStatus()

        def progress(stage: str, fraction: float) -> None:
            self._status.stage, self._status.fraction = stage, fraction

        try:
            pipeline = Pipeline.from_settings(request.settings, progress)
            report = pipeline.segment_files(request.inputs, request.output, request.report, request.probability)
        except InputError as error:
            self._status.state, self._status.message = RunState.FAILED, str(error)
            return
        self._status.state, self._status.fraction = RunState.SUCCEEDED, 1.0
        self._status.elapsed = report.total_seconds

    def poll(self) -> RunStatus:
        return self._status

    def cancel(self) -> None:
        """Nothing to stop: a synchronous run has finished before anyone can cancel it."""

    def wait(self, timeout: float | None = None) -> RunStatus:
        return self._status
