"""The demo: segment the bundled sample case, score it against its consensus label, draw the overlay."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from .metrics import evaluate_files
from .modalities import MODALITIES
from .output_paths import write_text_atomic
from .overlay import overlay_png
from .pipeline import Pipeline, SegmentationReport
from .resources import SAMPLE_CASE, sample_case


@dataclass
class DemoResult:
    """The files the demo wrote, its report and the scores against the bundled consensus label."""

    segmentation: Path
    report_path: Path
    figure: Path
    evaluation: Path
    report: SegmentationReport
    scores: dict[str, dict[str, float]]


def run_demo(output_folder: str | Path, pipeline: Pipeline) -> DemoResult:
    """Segment the sample case into `output_folder`; the consensus label uses BraTS 2021 labels (1/2/4)."""
    folder = Path(output_folder)
    name = SAMPLE_CASE.name
    files = sample_case()
    inputs = {m: files[m] for m in MODALITIES}
    segmentation = folder / f"{name}_segmentation.nii.gz"
    report_path = folder / f"{name}_report.json"
    report = pipeline.segment_files(inputs, segmentation, report_path)
    convention = pipeline.settings.label_convention
    scores = evaluate_files(segmentation, files["label"], convention, "brats2021")
    evaluation = folder / f"{name}_evaluation.json"
    write_text_atomic(json.dumps({"prediction": str(segmentation), "reference": str(files["label"]),
                                  "reference_kind": "consensus of 5 BraTS-2020 algorithms (BraTS-Toolkit)",
                                  "scores": scores}, indent=2) + "\n", evaluation)
    figure = folder / f"{name}_overlay.png"
    overlay_png(sitk.ReadImage(str(files["t1c"])), sitk.ReadImage(str(segmentation)), figure, convention,
                reference=sitk.ReadImage(str(files["label"])),
                title=f"{name}: {report.model} (top) and the bundled consensus label (bottom)")
    return DemoResult(segmentation, report_path, figure, evaluation, report, scores)
