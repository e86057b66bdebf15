"""Segmenting every case below a folder with one loaded model, past broken cases, with a summary."""

from __future__ import annotations

import csv
import io
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .cases import Case, find_cases
from .errors import Cancelled, InputError
from .labels import VOLUME_KEYS
from .output_paths import write_text_atomic
from .pipeline import Pipeline

SUMMARY_STEM = "summary"


@dataclass
class CaseResult:
    """What happened to one case: "ok", "bad input" (the user can fix it) or "error" (a bug)."""

    case: str
    status: str
    output: str = ""
    report: str = ""
    seconds: float = 0.0
    message: str = ""
    volumes_ml: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # the report's, for a case that worked


@dataclass
class BatchSummary:
    """All case results of a batch run, and where they were written."""

    input_folder: str
    output_folder: str
    model: str
    results: list[CaseResult] = field(default_factory=list)
    cancelled: bool = False

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status != "ok"]

    def exit_code(self) -> int:
        """0 when every case worked, 1 when any failed with an internal error, else 2 (bad input)."""
        if any(r.status == "error" for r in self.results):
            return 1
        return 2 if self.failed else 0

    def to_json(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in ("ok", "bad input", "error")}
        return json.dumps({**asdict(self), "counts": counts}, indent=2) + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["case", "status", "output", "seconds", *[f"{k}_ml" for k in VOLUME_KEYS], "message",
                         "warnings"])
        for r in self.results:
            writer.writerow([r.case, r.status, r.output, r.seconds,
                             *[r.volumes_ml.get(k, "") for k in VOLUME_KEYS], r.message, " | ".join(r.warnings)])
        return buffer.getvalue()

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write summary.json and summary.csv into the output folder."""
        json_path, csv_path = folder / f"{SUMMARY_STEM}.json", folder / f"{SUMMARY_STEM}.csv"
        write_text_atomic(self.to_json(), json_path)
        write_text_atomic(self.to_csv(), csv_path)
        return json_path, csv_path


def output_names(cases: list[Case]) -> list[str]:
    """A distinct file stem per case, never "summary" (cases in different folders may share a name).

    Names differing only in letter case count as the same, as they do on macOS and Windows disks.
    """
    names, seen = [], {SUMMARY_STEM: 1}
    for case in cases:
        count = seen.get(case.name.lower(), 0)
        seen[case.name.lower()] = count + 1
        names.append(case.name if count == 0 else f"{case.name}_{count + 1}")
    return names


def find_batch_cases(root: str | Path) -> list[Case]:
    """The cases to segment below a folder; refuses a missing folder or one without any case."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give the folder that holds the cases.")
    cases = find_cases(root) + dicom_cases(root)
    if not cases:
        raise InputError(f"no case found in {root}: expected folders of images named like "
                         "*_t1.nii.gz, *_t1ce.nii.gz, *_t2.nii.gz, *_flair.nii.gz, an nnU-Net dataset, or one "
                         "DICOM study per folder (with the 'dicom' extra installed).")
    return cases


def dicom_cases(root: Path) -> list[Case]:
    """One case per DICOM study folder below the root (none when pydicom is not installed)."""
    try:
        import pydicom  # noqa: F401 - the 'dicom' extra
    except ImportError:
        return []
    from .dicom_series import DicomStudy, dicom_case_folders
    return [Case(folder.name, DicomStudy(folder), layout="dicom") for folder in dicom_case_folders(root)]


def run_batch(cases: list[Case], output_folder: str | Path, pipeline: Pipeline,
              on_case: Callable[[int, int, Case], None] = lambda index, total, case: None,
              on_result: Callable[[CaseResult], None] = lambda result: None,
              input_folder: str = "") -> BatchSummary:
    """Segment each case into OUTDIR/<case>.nii.gz with its report; a broken case does not stop the rest.

    Ctrl-C (KeyboardInterrupt) or a cancel stops after the current case; the summary is still written.
    """
    folder = Path(output_folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary(str(input_folder), str(folder), f"{pipeline.card.name} {pipeline.card.version}")
    for index, (case, name) in enumerate(zip(cases, output_names(cases))):
        on_case(index, len(cases), case)
        output, report = folder / f"{name}.nii.gz", folder / f"{name}.json"
        start = time.perf_counter()
        result = CaseResult(name, "ok")
        try:
            segmentation = pipeline.segment_files(case.inputs, output, report)
            result.output, result.report = str(output), str(report)
            result.volumes_ml, result.warnings = segmentation.volumes_ml, segmentation.warnings
        except InputError as error:
            result.status, result.message = "bad input", str(error)
        except (Cancelled, KeyboardInterrupt):
            summary.cancelled = True
            break
        except Exception as error:  # noqa: BLE001 - one case's bug must not stop the batch
            result.status = "error"
            result.message = f"{type(error).__name__}: {error} | " + traceback.format_exc(limit=3).replace("\n", " ")
        result.seconds = round(time.perf_counter() - start, 2)
        summary.results.append(result)
        on_result(result)
    summary.write(folder)
    return summary
