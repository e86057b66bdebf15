"""The segmentation logic on MRML, without Qt: check inputs, run the engine with a given runner, write results.

Nothing is added to the scene before a run has succeeded, so a cancelled or failed run leaves it as it was.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from braintumorseg.labels import SEGMENT_CONVENTION
from braintumorseg.modalities import DISPLAY_NAMES, MODALITIES, reference_modality
from braintumorseg.run_summary import processing_summary
from braintumorseg.settings import RunSettings

from .display import add_probability_volume, write_volumes_table
from .rano_markups import write_rano
from .runner import EngineRequest, ProcessRunner, RunState, RunStatus
from .segments import OutputTarget, choose_target, write_segmentation
from .volume_files import read_volume_file, write_volume


@dataclass
class SegmentationJob:
    """One run in progress: its inputs, temporary folder, runner and where the result goes."""

    inputs: dict[str, object]
    reference: object
    folder: Path
    request: EngineRequest
    runner: object
    output: object = None
    replace_confirmed: bool = False
    status: RunStatus = field(default_factory=RunStatus)


@dataclass
class SegmentationResult:
    segmentation: object
    table: object
    volumes_ml: dict[str, float]
    stage_seconds: dict[str, float]
    total_seconds: float
    warnings: list[str]
    probability: object = None  # the whole-tumour probability volume (%), when the options asked for it
    rano_table: object = None  # the RANO lesion table (lines of the targets drawn), when the report has measurements
    processing: str = ""  # what preprocessing did: registration and its check, skull stripping, network grid


class SegmentationFailed(Exception):
    """A run failed for a reason the message explains to the user."""


def input_problems(inputs: dict[str, object]) -> list[str]:
    """What is wrong with the chosen volumes, each as one sentence for the user (empty when fine)."""
    chosen = {m: node for m, node in inputs.items() if node is not None}
    if not chosen:
        return ["Select at least one MRI volume: T1, T1Gd, T2 or FLAIR."]
    problems = []
    by_id: dict[str, list[str]] = {}
    for modality, node in chosen.items():
        by_id.setdefault(node.GetID(), []).append(DISPLAY_NAMES[modality])
        if node.GetImageData() is None:
            problems.append(f"The {DISPLAY_NAMES[modality]} volume '{node.GetName()}' holds no image; load it again.")
        elif node.GetParentTransformNode() is not None:
            problems.append(f"The {DISPLAY_NAMES[modality]} volume '{node.GetName()}' is moved by a transform; "
                            "harden the transform (Data module) before segmenting.")
    for names in by_id.values():
        if len(names) > 1:
            problems.append(f"The same volume is selected for {' and '.join(names)}; select a different volume "
                            "for each sequence.")
    if not problems:
        reference = chosen[reference_modality(list(chosen))]
        for modality, node in chosen.items():
            if node is not reference and ras_box_overlap(node, reference) < 0.5:
                problems.append(f"The {DISPLAY_NAMES[modality]} volume '{node.GetName()}' does not overlap the "
                                f"{DISPLAY_NAMES[reference_modality(list(chosen))]} volume; select volumes of the "
                                "same patient and study.")
    return problems


def node_ids(scene) -> list[str]:
    return [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]


def ras_box_overlap(node, reference) -> float:
    """Fraction of the reference volume's bounding box (in RAS) that the other volume's box covers: a quick
    check before a run (the engine then checks how much of the reference's brain the volume covers)."""
    a, b = np.zeros(6), np.zeros(6)
    node.GetRASBounds(a)
    reference.GetRASBounds(b)
    low = np.maximum(a[0::2], b[0::2])
    high = np.minimum(a[1::2], b[1::2])
    reference_size = np.prod(np.maximum(b[1::2] - b[0::2], 1e-6))
    return float(np.prod(np.clip(high - low, 0, None)) / reference_size)


class SegmentationLogic:
    """Segments brain tumours from volume nodes in a scene; the runner decides how the engine is run."""

    def __init__(self, scene, runner_factory=ProcessRunner):
        self.scene = scene
        self.runner_factory = runner_factory

    def start(self, inputs: dict[str, object], settings: RunSettings, output=None, replace_confirmed: bool = False,
              probability_map: bool = False) -> SegmentationJob:
        """Write the inputs to a temporary folder and start the engine; raises SegmentationFailed for bad inputs.

        The engine writes its labels in `SEGMENT_CONVENTION`, whatever `settings` say: the segments' own labels.
        """
        inputs = {m: inputs[m] for m in MODALITIES if inputs.get(m) is not None}
        problems = input_problems(inputs)
        if problems:
            raise SegmentationFailed(problems[0])
        if settings.model and not Path(settings.model).is_file():  # "" is the engine's shipped pair
            raise SegmentationFailed(f"The segmentation model {settings.model} is not installed; reinstall "
                                     "BrainTumorSeg.")
        folder = Path(tempfile.mkdtemp(prefix="BrainTumorSeg-"))
        try:
            files = {}
            for modality, node in inputs.items():
                files[modality] = folder / f"{modality}.nrrd"
                write_volume(node, files[modality])
        except (OSError, ValueError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise SegmentationFailed(str(error)) from None
        request = EngineRequest(inputs=files, output=folder / "labels.nii.gz", report=folder / "report.json",
                                settings=settings.with_changes(label_convention=SEGMENT_CONVENTION),
                                probability=folder / "probability.nii.gz" if probability_map else None)
        job = SegmentationJob(inputs=inputs, reference=inputs[reference_modality(list(inputs))], folder=folder,
                              request=request, runner=self.runner_factory(), output=output,
                              replace_confirmed=replace_confirmed)
        try:
            job.runner.start(request)
        except OSError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise SegmentationFailed(f"The segmentation engine could not be started ({error}).") from None
        return job

    def poll(self, job: SegmentationJob) -> RunStatus:
        job.status = job.runner.poll()
        return job.status

    def cancel(self, job: SegmentationJob) -> None:
        """Stop the engine and delete the temporary files; the scene is not touched."""
        job.runner.cancel()
        job.status = job.runner.poll()
        shutil.rmtree(job.folder, ignore_errors=True)

    def finish(self, job: SegmentationJob) -> SegmentationResult:
        """Bring a finished run's result into the scene, then delete the temporary files."""
        try:
            status = self.poll(job)
            if status.state is RunState.CANCELLED:
                raise SegmentationFailed("The segmentation was cancelled.")
            if status.state is not RunState.SUCCEEDED:
                raise SegmentationFailed(f"The segmentation failed: {status.message}")
            try:
                report = json.loads(job.request.report.read_text())
                labelmap = read_volume_file(job.request.output)
                probability = (read_volume_file(job.request.probability, "probability map", label_map=False)
                               if job.request.probability is not None else None)
            except (OSError, ValueError) as error:
                raise SegmentationFailed(f"The segmentation failed: {error}") from None
            target = None
            if choose_target(job.output, job.replace_confirmed) is OutputTarget.REPLACE:
                target = job.output
            before = set(node_ids(self.scene))
            try:
                name = f"{job.reference.GetName()} tumor segmentation"
                segmentation = write_segmentation(self.scene, labelmap, job.reference, target, name)
                table = write_volumes_table(self.scene, segmentation, report["volumes_ml"])
                rano_table = write_rano(self.scene, segmentation, report.get("rano"), job.replace_confirmed)
                if probability is not None:
                    add_probability_volume(self.scene, probability, job.reference,
                                           f"{job.reference.GetName()} tumor probability (%)")
            except Exception:
                for node_id in set(node_ids(self.scene)) - before:  # nothing half-added stays behind
                    self.scene.RemoveNode(self.scene.GetNodeByID(node_id))
                raise
            return SegmentationResult(segmentation, table, report["volumes_ml"], report["stage_seconds"],
                                      report["total_seconds"], report.get("warnings", []), probability, rano_table,
                                      processing_summary(report))
        finally:
            shutil.rmtree(job.folder, ignore_errors=True)

    def segment(self, inputs: dict[str, object], settings: RunSettings, output=None, replace_confirmed: bool = False,
                probability_map: bool = False) -> SegmentationResult:
        """Synchronous run for batch use and tests."""
        job = self.start(inputs, settings, output, replace_confirmed, probability_map)
        job.runner.wait()
        return self.finish(job)

