"""scripts/setup.sh refuses a Python older than pyproject.toml's requires-python at once, in one sentence, before it
creates .venv or installs anything (run on a copy of the script and pyproject.toml, so nothing here is touched)."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MINIMUM = tuple(int(n) for n in re.search(r'^requires-python = ">=(\d+)\.(\d+)"$',
                                          (ROOT / "pyproject.toml").read_text(), re.M).groups())


def older_pythons() -> list[str]:
    """Interpreters on this machine older than the minimum (python3.N on PATH, pyenv versions)."""
    found = {shutil.which(f"python3.{n}") for n in range(6, MINIMUM[1])}
    found |= set(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.*" / "bin" / "python")))
    older = []
    for python in sorted(p for p in found if p):
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                              text=True)
        if done.returncode == 0 and tuple(map(int, done.stdout.split())) < MINIMUM:
            older.append(python)
    return older


def run_setup(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "setup.sh")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": python}, timeout=60)
    assert not (tmp_path / ".venv").exists()
    return done


def test_an_interpreter_that_does_not_run_is_one_sentence(tmp_path):
    done = run_setup(tmp_path, str(tmp_path / "no-such-python"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"setup: cannot run {tmp_path / 'no-such-python'}; run setup again with "
                           f"PYTHON=python{MINIMUM[0]}.{MINIMUM[1]} (or newer).\n")


def test_a_python_older_than_requires_python_is_refused_at_once(tmp_path):
    older = older_pythons()
    if not older:
        pytest.skip(f"no Python older than {MINIMUM[0]}.{MINIMUM[1]} on this machine to try setup with")
    done = run_setup(tmp_path, older[-1])
    assert done.returncode == 1 and done.stdout == ""
    minimum = rf"{MINIMUM[0]}\.{MINIMUM[1]}"
    assert re.fullmatch(rf"setup: BrainTumorSeg needs Python {minimum} or later, but \S+ is Python 3\.\d+; "
                        rf"run setup again with PYTHON=python{minimum} \(or newer\)\.\n", done.stderr), done.stderr
