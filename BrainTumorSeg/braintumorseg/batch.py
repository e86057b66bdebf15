"""A batch's cases, their results and the summary of a batch run (the running itself is in `cohort`)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .cases import Case, find_cases
from .errors import InputError
from .labels import VOLUME_KEYS
from .output_paths import write_text_atomic

SUMMARY_STEM = "summary"
STATUSES = ("ok", "bad input", "error")
# What this run did with a case: segmented it, segmented it again after a failure (--retry-failed), or kept
# the result of an earlier run with the same inputs, settings and model (done, or failed and not retried).
ACTIONS = ("segmented", "retried", "skipped-done", "skipped-failed")


@dataclass
class CaseResult:
    """What happened to one case: "ok", "bad input" (the user can fix it) or "error" (a bug), and which of
    `ACTIONS` this run took."""

    case: str
    status: str
    output: str = ""
    report: str = ""
    seconds: float = 0.0
    message: str = ""
    volumes_ml: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # the report's, for a case that worked
    action: str = "segmented"
    fingerprint: str = ""  # hash of the inputs, settings and model (see `cohort.fingerprint`)

    @classmethod
    def from_dict(cls, record: dict) -> CaseResult:
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})


@dataclass
class BatchSummary:
    """All case results of a batch run, and where they were written."""

    input_folder: str
    output_folder: str
    model: str
    results: list[CaseResult] = field(default_factory=list)
    cancelled: bool = False
    shard: str = ""  # "K/N" when this run did one shard of the cases

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status != "ok"]

    def exit_code(self) -> int:
        """0 when every case worked, 1 when any failed with an internal error, else 2 (bad input)."""
        if any(r.status == "error" for r in self.results):
            return 1
        return 2 if self.failed else 0

    def to_json(self) -> str:
        counts = {s: sum(r.status == s for r in self.results) for s in STATUSES}
        actions = {a: sum(r.action == a for r in self.results) for a in ACTIONS}
        return json.dumps({**asdict(self), "counts": counts, "actions": actions}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BatchSummary:
        record = json.loads(text)
        summary = cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})
        summary.results = [CaseResult.from_dict(r) for r in record.get("results", [])]
        return summary

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["case", "status", "action", "output", "seconds", *[f"{k}_ml" for k in VOLUME_KEYS],
                         "message", "warnings"])
        for r in self.results:
            writer.writerow([r.case, r.status, r.action, r.output, r.seconds,
                             *[r.volumes_ml.get(k, "") for k in VOLUME_KEYS], r.message, " | ".join(r.warnings)])
        return buffer.getvalue()

    def write(self, folder: Path, stem: str = SUMMARY_STEM) -> tuple[Path, Path]:
        """Write <stem>.json and <stem>.csv (summary.json, summary.csv) into the output folder."""
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
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
