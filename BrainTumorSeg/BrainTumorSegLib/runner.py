"""Running the engine on files: in a separate process polled by the panel, or in-process and synchronously."""

from __future__ import annotations

import json
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

# The folder that holds the `braintumorseg` engine package (next to this package in the module folder).
ENGINE_PARENT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SegmentationOptions:
    """The model and what the Advanced section of the panel sets."""

    model: Path
    bias_correction: bool = True
    register: bool = False
    skull_strip: str = "auto"
    tta: bool = True
    device: str = "auto"
    min_cluster_ml: float = 0.1
    probability_map: bool = False


@dataclass(frozen=True)
class EngineRequest:
    """One run of the engine: input files by modality, where to write, and the options."""

    inputs: dict[str, Path]
    output: Path
    report: Path
    options: SegmentationOptions
    probability: Path | None = None  # where the whole-tumour probability map goes, when the options ask for it


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
    options = request.options
    command += ["--output", str(request.output), "--report", str(request.report), "--model", str(options.model),
                "--device", options.device, "--skull-strip", options.skull_strip,
                "--min-cluster-ml", repr(float(options.min_cluster_ml)), "--json-progress"]
    if not options.bias_correction:
        command.append("--no-bias-correction")
    if options.register:
        command.append("--register")
    if not options.tta:
        command.append("--no-tta")
    if request.probability is not None:
        command += ["--probability-map", str(request.probability)]
    return command


def parse_progress(line: str) -> tuple[str, float, float | None] | None:
    """(stage, fraction, seconds since start) from one `--json-progress` line, or None for other output."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "stage" not in data:
        return None
    try:
        fraction = min(1.0, max(0.0, float(data.get("fraction", 0.0))))
        seconds = data.get("seconds")
        return str(data["stage"]), fraction, None if seconds is None else float(seconds)
    except (TypeError, ValueError):
        return None


def failure_message(stderr_text: str, returncode: int) -> str:
    """The engine's own one-sentence explanation (its last line on stderr), or a plain fallback."""
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    if lines:
        last = lines[-1]
        return last.removeprefix("error: ").removeprefix("braintumorseg: error: ")
    return f"the segmentation stopped unexpectedly (exit code {returncode}); see the Python console for details."


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
            self._status.message = failure_message(self._stderr_text(), returncode)
        return self._status

    def _drain(self) -> None:
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            progress = parse_progress(line)
            if progress is None:
                continue
            stage, fraction, seconds = progress
            self._status.stage, self._status.fraction = stage, fraction
            if seconds is not None:
                self._status.elapsed = seconds

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

    def run(self, request: EngineRequest) -> RunStatus:
        """Synchronous: start and wait."""
        self.start(request)
        return self.wait()


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
        from braintumorseg.inference import InferenceSettings
        from braintumorseg.modelcard import ModelCard
        from braintumorseg.pipeline import Pipeline, SegmentationSettings
        from braintumorseg.postprocessing import PostprocessSettings
        from braintumorseg.preprocessing import PreprocessSettings

        self._status = RunStatus()

        def progress(stage: str, fraction: float) -> None:
            self._status.stage, self._status.fraction = stage, fraction

        options = request.options
        settings = SegmentationSettings(
            preprocess=PreprocessSettings(bias_correction=options.bias_correction, register=options.register,
                                          skull_strip=options.skull_strip),
            inference=InferenceSettings(device=options.device, tta=options.tta),
            postprocess=PostprocessSettings(min_cluster_ml=options.min_cluster_ml))
        try:
            pipeline = Pipeline(ModelCard.load(options.model), settings, progress)
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

    def run(self, request: EngineRequest) -> RunStatus:
        self.start(request)
        return self._status
