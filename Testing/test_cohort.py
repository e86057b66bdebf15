"""Cohorts: worker processes and a Dask LocalCluster give the labels of one process; resume after a killed run
loses and redoes nothing; broken cases are reported and skipped; shards split and merge; progress and time left."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from braintumorseg.batch import find_batch_cases
from braintumorseg.cli import main
from braintumorseg.cohort import fingerprint, parse_shard, run_cohort, shard_of
from braintumorseg.errors import InputError
from braintumorseg.pipeline import Pipeline, SegmentationSettings
from braintumorseg.postprocessing import PostprocessSettings
from braintumorseg.progress import CohortProgress
from braintumorseg.settings import CohortSettings

from conftest import ROOT, synthetic_case

ALIASES = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}


def make_cohort(root: Path, count: int, shape=(40, 48, 44)) -> list[str]:
    """`count` synthetic BraTS-named cases below root, each with its own noise and lesion."""
    names = [f"Brats18_X_{i}" for i in range(count)]
    for seed, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        for modality, path in synthetic_case(folder, shape=shape, seed=seed).items():
            path.rename(folder / f"{name}_{ALIASES[modality]}.nii.gz")
    return names


def labels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def assert_same_labels(folder: Path, reference: Path) -> None:
    """Every label map of `reference` is in `folder`, equal voxel for voxel (the message names those that differ)."""
    expected, got = labels(reference), labels(folder)
    assert list(got) == list(expected)
    differ = {name: int((got[name] != a).sum()) for name, a in expected.items() if not np.array_equal(got[name], a)}
    assert not differ, f"voxels that differ, by case: {differ}"
    assert any(a.any() for a in got.values())  # the labels compared are not all empty


def stable(summary: dict) -> dict:
    """A summary without what depends on timing or on where it was written."""
    drop = {"seconds", "output", "report"}
    return {"counts": summary["counts"], "actions": summary["actions"], "model": summary["model"],
            "results": [{k: v for k, v in r.items() if k not in drop} for r in summary["results"]]}


def read_summary(folder: Path, stem: str = "summary") -> dict:
    return json.loads((folder / f"{stem}.json").read_text())


SETTINGS = SegmentationSettings(postprocess=PostprocessSettings(min_cluster_ml=0.0))  # N4 and TTA on


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, tiny_card):
    """Three cases and the reference run: this process, one case after another."""
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root / "cases", 3)
    out = root / "one-process"
    summary = run_cohort(find_batch_cases(root / "cases"), out, Pipeline(tiny_card, SETTINGS))
    assert summary.exit_code() == 0
    return root / "cases", out


def test_workers_give_the_labels_of_one_process(cohort, tiny_card, tmp_path):
    cases, reference = cohort
    summary = run_cohort(find_batch_cases(cases), tmp_path, Pipeline(tiny_card, SETTINGS), CohortSettings(workers=2))
    assert summary.exit_code() == 0
    assert stable(read_summary(tmp_path)) == stable(read_summary(reference))
    assert_same_labels(tmp_path, reference)
    report = json.loads((tmp_path / "Brats18_X_0.json").read_text())  # the first: it loaded the model
    assert {"load inputs", "bias correction", "load model", "inference"} <= set(report["stage_seconds"])


def test_dask_local_cluster_gives_the_summary_of_one_process(cohort, tiny_card, tmp_path):
    cases, reference = cohort
    environ = dict(os.environ)
    summary = run_cohort(find_batch_cases(cases), tmp_path, Pipeline(tiny_card, SETTINGS),
                         CohortSettings(workers=2, backend="dask", scheduler="local"))
    assert summary.exit_code() == 0
    assert stable(read_summary(tmp_path)) == stable(read_summary(reference))
    assert_same_labels(tmp_path, reference)
    assert os.environ == environ  # the LocalCluster's thread variables do not reach later processes


def test_shards_split_the_cases_and_merge_into_the_one_process_summary(cohort, tiny_card, tmp_path, capsys):
    cases, reference = cohort
    argv = ["-o", str(tmp_path), "--model", str(tiny_card.path), "--min-cluster-ml", "0"]
    assert main(["batch", str(cases), *argv, "--merge-summaries"]) == 2
    assert "no shard summary" in capsys.readouterr().err
    assert main(["batch", str(cases), *argv, "--shard", "2/2"]) == 0
    assert [r["case"] for r in read_summary(tmp_path, "summary-shard-2-of-2")["results"]] == ["Brats18_X_1"]
    assert main(["batch", str(cases), *argv, "--merge-summaries"]) == 2
    assert "shard 1 of 2 has no summary" in capsys.readouterr().err
    assert main(["batch", str(cases), *argv, "--shard", "1/2"]) == 0
    assert main(["batch", str(cases), *argv, "--merge-summaries"]) == 0
    assert "merged the shard summaries of 3 cases" in capsys.readouterr().out
    assert stable(read_summary(tmp_path)) == stable(read_summary(reference))
    assert_same_labels(tmp_path, reference)


def test_shard_and_fingerprint_rules(tiny_card, synthetic, tmp_path):
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0"):
        with pytest.raises(InputError):
            parse_shard(bad)
    shards = [shard_of(11, (k, 4)) for k in range(1, 5)]
    assert sorted(i for s in shards for i in s) == list(range(11)) and [len(s) for s in shards] == [3, 3, 3, 2]
    first = fingerprint(synthetic, tiny_card, SETTINGS)
    assert fingerprint(dict(synthetic), tiny_card, SETTINGS) == first
    assert fingerprint(synthetic, tiny_card, replace(SETTINGS, label_convention="brats2023")) != first
    image = sitk.ReadImage(str(synthetic["t2"]))
    sitk.WriteImage(image * 1.01, str(synthetic["t2"]))
    assert fingerprint(synthetic, tiny_card, SETTINGS) != first


def test_broken_cases_are_reported_skipped_and_retried_on_request(capsys, tiny_card, tmp_path):
    root = tmp_path / "cases"
    make_cohort(root, 4)
    broken = root / "Brats18_X_1" / "Brats18_X_1_t1ce.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(broken)) * 0.0, str(broken))
    (root / "Brats18_X_2" / "Brats18_X_2_t2.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "results"
    argv = ["batch", str(root), "-o", str(out), "--model", str(tiny_card.path), "--no-bias-correction", "--no-tta"]
    assert main([*argv, "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "Brats18_X_1: bad input: " in err and "every voxel is zero" in err and "Traceback" not in err
    assert "Brats18_X_2: bad input: " in err
    assert err.count("progress: ") == 4 and "progress: 4/4 cases, 2 failed" in err
    summary = read_summary(out)
    assert summary["counts"] == {"ok": 2, "bad input": 2, "error": 0}
    assert [r["status"] for r in summary["results"]] == ["ok", "bad input", "bad input", "ok"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"Brats18_X_{i}.{s}" for i in (0, 3) for s in ("nii.gz", "json")] + ["summary.json", "summary.csv"])
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("Brats18_*")}

    assert main(argv) == 2  # the rerun redoes nothing
    captured = capsys.readouterr()
    assert "Brats18_X_0: ok, skipped: done in an earlier run" in captured.out
    assert "Brats18_X_1: bad input, in an earlier run (--retry-failed retries it): " in captured.err
    assert "2 of 4 cases ok (0 segmented, 0 retried, 2 done before), 2 failed" in captured.out
    assert [r["action"] for r in read_summary(out)["results"]] == [
        "skipped-done", "skipped-failed", "skipped-failed", "skipped-done"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("Brats18_*")} == written

    sitk.WriteImage(sitk.ReadImage(str(root / "Brats18_X_0" / "Brats18_X_0_t1ce.nii.gz")), str(broken))
    assert main([*argv, "--retry-failed"]) == 2  # case 1 fixed: its inputs changed, so it runs; 2 is retried
    summary = read_summary(out)
    assert [(r["status"], r["action"]) for r in summary["results"]] == [
        ("ok", "skipped-done"), ("ok", "segmented"), ("bad input", "retried"), ("ok", "skipped-done")]
    assert summary["actions"] == {"segmented": 1, "retried": 1, "skipped-done": 2, "skipped-failed": 0}
    assert "Brats18_X_2: bad input, retried: " in capsys.readouterr().err


def test_resume_after_a_killed_run_loses_nothing_and_redoes_nothing(cohort, tiny_card, tmp_path):
    cases, reference = cohort
    out = tmp_path / "results"
    argv = ["batch", str(cases), "-o", str(out), "--model", str(tiny_card.path), "--min-cluster-ml", "0"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "BrainTumorSeg"), str(ROOT)])}
    process = subprocess.Popen([sys.executable, "-m", "braintumorseg", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "summary.json").exists() and read_summary(out)["results"]:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)  # mid-way through the next case
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    finished = {p.stem for p in out.glob("*.json") if p.stem != "summary"}  # the report is written last
    assert {r["case"] for r in read_summary(out)["results"]} <= finished and 1 <= len(finished) < 3
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*") if p.name.split(".")[0] in finished}
    assert main(argv) == 0
    summary = read_summary(out)
    actions = {r["case"]: r["action"] for r in summary["results"]}
    assert len(actions) == 3 and summary["counts"]["ok"] == 3
    assert {c for c, a in actions.items() if a == "skipped-done"} == finished, actions
    assert {c for c, a in actions.items() if a == "segmented"} == set(actions) - finished
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*") if p.name.split(".")[0] in finished} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a partial file was left behind"
    assert_same_labels(out, reference)


def test_cohort_progress_says_the_time_left():
    stream = io.StringIO()
    progress = CohortProgress(stream, tty=False)
    progress.plan(4)
    progress.case_finished(failed=False, kept=True)  # kept from an earlier run: no line, not in the rate
    assert stream.getvalue() == "" and progress.seconds_left() is None
    progress.start -= 10.0  # one case took 10 s
    progress.case_finished(failed=True, kept=False)
    assert progress.seconds_left() == pytest.approx(20.0, rel=0.05)
    line = stream.getvalue()
    assert line.startswith("progress: 2/4 cases, 1 failed, 0:00:10 elapsed, about 0:00:20 left")
    terminal = io.StringIO()
    bar = CohortProgress(terminal, tty=True)
    bar.plan(2)
    bar.stage("Brats_A", "bias correction", 0.5)
    assert terminal.getvalue().startswith("\r\033[K[#####.....") and "Brats_A bias correction" in terminal.getvalue()
    bar.clear()
    bar.close()
    assert terminal.getvalue().endswith("\r\033[K")
