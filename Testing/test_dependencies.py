"""What the Slicer module installs on first use: its requirements file, read with `packaging`, and how it agrees
with the project's own dependency list."""

from __future__ import annotations

import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from BrainTumorSegLib.dependencies import (DECLINED, REPORT_REQUIREMENTS, install_question, missing, read_requirements,
                                          self_test_skip_reason)

from conftest import ROOT

# What Slicer's own Python already has: the module never installs these.
SHIPPED_BY_SLICER = {"numpy", "simpleitk"}


def test_missing_packages_and_versions_outside_the_range():
    assert missing(read_requirements()) == []  # all installed in this environment
    absent = Requirement("surely-not-a-real-package-xyz>=1")
    too_old = Requirement("numpy<1.0")
    assert missing([absent, Requirement("numpy"), too_old]) == [absent, too_old]
    question = install_question([absent])
    assert "surely-not-a-real-package-xyz>=1" in question and question.rstrip().endswith("meanwhile.")
    assert "cannot run" in DECLINED


def test_the_slicer_requirements_are_the_projects_dependencies():
    """One dependency list: requirements.txt names each dependency of pyproject.toml that Slicer lacks, with the
    same version range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(line).name.lower(): Requirement(line) for line in project["dependencies"]}
    slicer = {r.name.lower(): r for r in read_requirements()}
    assert set(slicer) == set(declared) - SHIPPED_BY_SLICER
    for name, requirement in slicer.items():
        assert requirement.specifier == declared[name].specifier, name


def test_the_reports_requirements_are_the_report_extra():
    """The panel installs the report's packages on first use: the same list as pyproject's "report" extra."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["report"]
    assert sorted(map(str, read_requirements(REPORT_REQUIREMENTS))) == sorted(str(Requirement(r)) for r in extra)
    question = install_question(read_requirements(REPORT_REQUIREMENTS))
    assert "matplotlib>=3.5" in question and "a few tens of MB" in question and "GB" not in question


def test_the_self_test_reason_names_each_unmet_requirement_in_one_sentence():
    """The self-test installs nothing: under ctest it skips with this sentence instead."""
    torch_version = metadata.version("torch")  # e.g. "2.13.0+cpu"
    assert missing([Requirement("torch>=2.8")]) == []  # a local build suffix still meets the range
    unmet = missing([Requirement("surely-not-a-real-package-xyz>=1"), Requirement("torch>=99")])
    reason = self_test_skip_reason(unmet)
    assert reason == (f"BrainTumorSeg's self-test needs surely-not-a-real-package-xyz>=1 (not installed), torch>=99 "
                      f"(installed: {torch_version}) and installs nothing itself: click Segment once in the "
                      "BrainTumorSeg panel to install them, then run it again.")
