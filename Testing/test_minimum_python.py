"""The module, BrainTumorSegLib, the engine and training run on the oldest Python pyproject.toml claims
(requires-python): its own parser with that feature version, and vermin for the standard library and language
features each file uses (the suite itself runs on one Python only)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MINIMUM = tuple(int(n) for n in re.search(r'^requires-python = ">=(\d+)\.(\d+)"$',
                                          (ROOT / "pyproject.toml").read_text(), re.M).groups())
SOURCES = [ROOT / "BrainTumorSeg" / "BrainTumorSeg.py",
           *(path for folder in ("BrainTumorSeg/BrainTumorSegLib", "BrainTumorSeg/braintumorseg", "training")
             for path in sorted((ROOT / folder).glob("*.py")))]


def vermin(paths: list[Path]) -> subprocess.CompletedProcess:
    target = f"{MINIMUM[0]}.{MINIMUM[1]}-"
    command = "import sys; from vermin import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", command, f"--target={target}", "--violations", "--eval-annotations",
                           "--no-tips", "--processes=1", *map(str, paths)], capture_output=True, text=True)


def test_the_claim_is_what_slicer_and_this_suite_run():
    assert MINIMUM == (3, 11)  # Slicer 5.10-5.12 bundle Python 3.12.10; the suite runs on 3.11
    assert sys.version_info[:2] >= MINIMUM


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_file_parses_with_the_oldest_grammar(path):
    ast.parse(path.read_text(), filename=str(path), feature_version=MINIMUM)


def test_vermin_finds_nothing_newer_than_the_oldest_python():
    assert len(SOURCES) > 40
    done = vermin(SOURCES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_vermin_reports_a_newer_standard_library_member(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("import itertools\n\nprint(list(itertools.batched([1, 2, 3], 2)))\n")  # Python 3.12
    done = vermin([newer])
    assert done.returncode != 0 and "'itertools.batched' member requires" in done.stdout


def test_the_oldest_grammar_rejects_newer_syntax():
    with pytest.raises(SyntaxError):
        ast.parse("type Volume = list[float]\n", feature_version=MINIMUM)  # PEP 695, Python 3.12
