"""Which Python packages the engine needs that Slicer's Python lacks (or has at a version outside the range),
read from Resources/requirements.txt with `packaging` (which Slicer ships)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REQUIREMENTS = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
REPORT_REQUIREMENTS = REQUIREMENTS.with_name("report-requirements.txt")  # Save report... (installed when first used)


def read_requirements(path: Path = REQUIREMENTS) -> list[Requirement]:
    """The requirements, one per line (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def missing(requirements: list[Requirement]) -> list[Requirement]:
    """Requirements not installed, or installed at a version their specifier excludes."""
    found = []
    for requirement in requirements:
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            found.append(requirement)
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(requirement)
    return found


def describe(requirement: Requirement) -> str:
    """e.g. "torch>=2.8 (installed: 2.4.1)" or "monai>=1.6 (not installed)"."""
    try:
        return f"{requirement} (installed: {metadata.version(requirement.name)})"
    except metadata.PackageNotFoundError:
        return f"{requirement} (not installed)"


def self_test_skip_reason(missing_requirements: list[Requirement]) -> str:
    """Why the self-test does not run: it installs nothing (pip would download gigabytes under ctest)."""
    return (f"BrainTumorSeg's self-test needs {', '.join(describe(r) for r in missing_requirements)} and installs "
            "nothing itself: click Segment once in the BrainTumorSeg panel to install them, then run it again.")


def install_question(missing_requirements: list[Requirement]) -> str:
    """The confirmation asked before installing anything."""
    names = ", ".join(str(r) for r in missing_requirements)
    size = ("about 1-3 GB (PyTorch is large) and can take several minutes"
            if any(r.name == "torch" for r in missing_requirements) else "a few tens of MB")
    return (f"BrainTumorSeg needs these Python packages, which are not installed yet: {names}.\n\n"
            f"Install them now? This downloads {size}; Slicer may be unresponsive meanwhile.")


DECLINED = ("The packages were not installed, so the segmentation cannot run. Click Segment again "
            "when you are ready to install them.")
