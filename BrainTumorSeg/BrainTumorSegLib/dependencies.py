"""Which Python packages the engine needs that Slicer's Python lacks, read from Resources/requirements.txt."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"

# pip name → import name, where they differ.
IMPORT_NAMES = {"SimpleITK": "SimpleITK", "scikit-image": "skimage"}


@dataclass(frozen=True)
class Requirement:
    name: str
    specifier: str

    @property
    def line(self) -> str:
        return f"{self.name}{self.specifier}"

    @property
    def import_name(self) -> str:
        return IMPORT_NAMES.get(self.name, self.name.replace("-", "_"))


def read_requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    """The requirements, one per non-comment line: a name and an optional version specifier."""
    requirements = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        requirements.append(Requirement(match.group(1), match.group(2).replace(" ", "")))
    return requirements


def missing(requirements: list[Requirement]) -> list[Requirement]:
    """Requirements whose package cannot be imported."""
    return [r for r in requirements if importlib.util.find_spec(r.import_name) is None]


def install_question(missing_requirements: list[Requirement]) -> str:
    """The confirmation asked before installing anything."""
    names = ", ".join(r.name for r in missing_requirements)
    return (f"BrainTumorSeg needs these Python packages, which are not installed yet: {names}.\n\n"
            "Install them now? This downloads about 1-3 GB (PyTorch is large) and can take several minutes; "
            "Slicer may be unresponsive meanwhile.")


DECLINED = ("The packages were not installed, so the segmentation cannot run. Click Segment again "
            "when you are ready to install them.")
