"""Training cases: the engine's case finder plus label conventions and partial labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from braintumorseg.cases import Case, find_cases
from braintumorseg.errors import InputError
from braintumorseg.modalities import modality_from_name

WHOLE_TUMOUR_ONLY = "wt"


@dataclass
class LabelledCase:
    """A case with a label map and the convention its values follow."""

    case: Case
    convention: str


def detect_convention(label: Path, case: Case) -> str:
    """Guess the label convention from the values and names (BraTS 2015/2021/2023, nnU-Net, WT only)."""
    try:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    except RuntimeError as error:
        raise unreadable(label, case, error) from None
    values = set(np.unique(array).astype(int).tolist()) - {0}
    name = label.name.lower()
    if values <= {1}:
        return WHOLE_TUMOUR_ONLY
    if "otmulticlass" in name or {3, 4} <= values:
        return "brats2015"
    if 4 in values:
        return "brats2021"
    if case.layout == "nnunet":
        return "nnunet"
    brats2023_names = any(modality_from_name(p.name) and any(t in p.name.lower() for t in ("t1n", "t2f", "t2w"))
                          for p in case.inputs.values())
    return "brats2023" if brats2023_names or "-seg" in name else "brats2021"


def labelled_cases(roots: list[str | Path], exclude: set[str] = frozenset(),
                   only: set[str] | None = None) -> list[LabelledCase]:
    """The labelled cases below the roots (only those named in `only`, when given), except the excluded."""
    found = []
    for root in roots:
        if not Path(root).is_dir():
            raise InputError(f"{root} is not a folder; give the folders that hold the labelled cases.")
        for case in find_cases(root):
            if (case.label is None or case.name in exclude or (only is not None and case.name not in only)
                    or is_slice_case(case)):
                continue
            found.append(LabelledCase(case, detect_convention(case.label, case)))
    return found


def is_slice_case(case: Case) -> bool:
    """2D cases (single slices) cannot train a 3D model."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(next(iter(case.inputs.values()))))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise unreadable(Path(reader.GetFileName()), case, error) from None
    return reader.GetDimension() < 3 or min(reader.GetSize()) < 2


def unreadable(path: Path, case: Case, error: RuntimeError) -> InputError:
    """The error for a case file SimpleITK cannot read: which file, and how to go on without it."""
    reason = next((line.strip() for line in str(error).splitlines() if line.strip()), "unreadable")
    return InputError(f"{path} cannot be read ({reason[:160]}); replace it, or leave case {case.name} out "
                      "(prepare --exclude, evaluate --cases).")
