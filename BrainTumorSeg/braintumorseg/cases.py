"""Finding cases on disk: BraTS-style folders (2013–2023 file names) and the nnU-Net layout."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .modalities import is_label_name, modality_from_name

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass
class Case:
    """One patient visit: modality → image file, and the label file when there is one."""

    name: str
    inputs: dict[str, Path] = field(default_factory=dict)
    label: Path | None = None
    layout: str = "brats"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def case_from_folder(folder: Path) -> Case | None:
    """A case from one folder of image files, or None when no modality is recognised."""
    case = Case(folder.name)
    for path in sorted(p for p in folder.iterdir() if is_image_file(p)):
        if is_label_name(path.name):
            if re.search(r"brainmask|(^|[_\-.])mask([_\-.]|$)", path.name.lower()):
                continue
            case.label = case.label or path
            continue
        modality = modality_from_name(path.name)
        if modality and modality not in case.inputs:
            case.inputs[modality] = path
    return case if case.inputs else None


def nnunet_channels(dataset: Path) -> dict[int, str]:
    """Channel number → modality from an nnU-Net dataset.json; refuses one the engine cannot use."""
    try:
        meta = json.loads(dataset.read_text())
    except ValueError as error:
        raise InputError(f"{dataset} is not valid JSON ({error}); fix the file or re-export the dataset.") from None
    names = (meta.get("channel_names") or meta.get("modality")) if isinstance(meta, dict) else None
    if not isinstance(names, dict) or not names or not all(str(k).isdecimal() for k in names):
        raise InputError(f'{dataset} has no "channel_names" object of channel numbers and sequence names; add one '
                         'such as {"0": "T1", "1": "T1Gd", "2": "T2", "3": "FLAIR"}.')
    channels = {int(k): modality_from_name(str(v)) for k, v in names.items()}
    if not any(channels.values()):
        raise InputError(f"{dataset}: none of its channel names ({', '.join(map(str, names.values()))}) is T1, "
                         "T1Gd, T2 or FLAIR; name the channels after their sequences, e.g. \"T1Gd\".")
    return {number: modality for number, modality in channels.items() if modality}


def nnunet_cases(root: Path) -> list[Case]:
    """Cases of an nnU-Net raw dataset (imagesTr/CASE_000X.nii.gz, labelsTr/CASE.nii.gz)."""
    channels = nnunet_channels(root / "dataset.json")
    cases: dict[str, Case] = {}
    for path in sorted((root / "imagesTr").iterdir()):
        match = re.match(r"(.+)_(\d{4})\.", path.name)
        if not match or channels.get(int(match.group(2))) is None:
            continue
        case = cases.setdefault(match.group(1), Case(match.group(1), layout="nnunet"))
        case.inputs[channels[int(match.group(2))]] = path
    for case in cases.values():
        labels = [p for p in (root / "labelsTr").glob(f"{case.name}.*") if is_image_file(p)]
        case.label = labels[0] if labels else None
    return list(cases.values())


def find_cases(root: str | Path) -> list[Case]:
    """Every case below a folder: the folder itself, its sub-folders, or an nnU-Net dataset."""
    root = Path(root)
    if (root / "dataset.json").is_file() and (root / "imagesTr").is_dir():
        return nnunet_cases(root)
    single = case_from_folder(root)
    if single:
        return [single]
    found = []
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        if (folder / "dataset.json").is_file() and (folder / "imagesTr").is_dir():
            found.extend(nnunet_cases(folder))
        elif folder.parent.name not in ("imagesTr", "labelsTr"):
            case = case_from_folder(folder)
            if case:
                found.append(case)
    return found


