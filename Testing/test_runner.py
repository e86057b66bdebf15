"""The engine in a separate process, as the panel runs it: command line, progress, cancel, failures."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from BrainTumorSegLib.logic import SegmentationFailed, SegmentationLogic  # noqa: E402
from BrainTumorSegLib.runner import EngineRequest, InProcessRunner, ProcessRunner, RunState, engine_command  # noqa: E402
from braintumorseg.cli import build_parser  # noqa: E402
from braintumorseg.resources import default_model_card  # noqa: E402
from braintumorseg.settings import RunSettings  # noqa: E402
from slicer_scene import load_volume, new_scene  # noqa: E402

from test_logic import exported_labels, node_ids  # noqa: E402


def test_command_line_is_what_the_engine_parses(tmp_path):
    settings = RunSettings(model=str(tmp_path / "m.json"), bias_correction=False, register="on", skull_strip="off",
                           tta=False, device="cpu", min_cluster_ml=0.25, fp32=True, label_convention="brats2023",
                           threads=1)
    request = EngineRequest(inputs={"t1c": tmp_path / "a b.nrrd", "flair": tmp_path / "f.nrrd"},
                            output=tmp_path / "out.nii.gz", report=tmp_path / "r.json", settings=settings,
                            probability=tmp_path / "p.nii.gz")
    command = engine_command(request, "/usr/bin/python3")
    assert command[:4] == ["/usr/bin/python3", "-m", "braintumorseg.cli", "segment"]
    args = build_parser().parse_args(command[3:])
    assert (args.t1c, args.flair, args.t1, args.t2) == (str(tmp_path / "a b.nrrd"), str(tmp_path / "f.nrrd"),
                                                        None, None)
    assert (args.output, args.report) == (str(request.output), str(request.report))
    assert RunSettings.from_namespace(args) == settings  # every setting crosses the process boundary
    assert args.json_progress and args.probability_map == str(tmp_path / "p.nii.gz")
    defaults = build_parser().parse_args(engine_command(EngineRequest({}, request.output, request.report,
                                                                      RunSettings()), "python")[3:])
    assert RunSettings.from_namespace(defaults) == RunSettings() and defaults.probability_map is None


def sample_nodes(scene, sample, modalities=("t1", "t1c", "t2", "flair")):
    return {m: load_volume(scene, sample[m], f"case {m}") for m in modalities}


def test_background_run_reports_stages_and_matches_the_in_process_run(sample, tiny_card):
    scene = new_scene()
    nodes = sample_nodes(scene, sample)
    options = RunSettings(model=str(tiny_card.path), bias_correction=False, device="cpu")
    logic = SegmentationLogic(scene, ProcessRunner)
    job = logic.start(nodes, options)
    assert isinstance(job.runner, ProcessRunner) and job.runner.pid != os.getpid()
    seen, fractions = [], []
    while not (status := logic.poll(job)).finished:
        if status.stage and (not seen or seen[-1] != status.stage):
            seen.append(status.stage)
        fractions.append(status.fraction)
        time.sleep(0.02)
    assert status.state is RunState.SUCCEEDED, status.message
    assert "inference" in seen and fractions == sorted(fractions)
    result = logic.finish(job)
    assert not job.folder.exists()
    assert set(result.stage_seconds) >= {"load inputs", "inference"} and result.total_seconds > 0
    in_process = SegmentationLogic(scene, InProcessRunner).segment(nodes, options)
    ours, matrix = exported_labels(result.segmentation, nodes["t1c"])
    theirs, _ = exported_labels(in_process.segmentation, nodes["t1c"])
    assert np.array_equal(ours, theirs)
    assert result.volumes_ml == in_process.volumes_ml


def test_cancel_kills_the_process_group_and_leaves_the_scene_unchanged(sample, tiny_card):
    scene = new_scene()
    nodes = sample_nodes(scene, sample, ("t1c", "flair"))
    before = node_ids(scene)
    logic = SegmentationLogic(scene, ProcessRunner)
    # Bias correction on the full-size case keeps the engine busy long enough to cancel it mid-run.
    job = logic.start(nodes, RunSettings(model=str(tiny_card.path), bias_correction=True, device="cpu"))
    deadline = time.monotonic() + 60
    while logic.poll(job).stage not in ("bias correction", "normalization", "inference"):
        assert not job.status.finished, job.status.message
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = job.runner.pid
    logic.cancel(job)
    assert job.status.state is RunState.CANCELLED
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # no process of the group is left
    assert not job.folder.exists()
    assert node_ids(scene) == before
    with pytest.raises(SegmentationFailed, match="cancelled"):
        logic.finish(job)
    assert node_ids(scene) == before


def test_failed_run_gives_the_engine_sentence_and_changes_nothing(sample, tiny_card, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_card.path.parent, damaged)
    card = json.loads((damaged / "model.json").read_text())
    card["sha256"] = "0" * 64
    (damaged / "model.json").write_text(json.dumps(card))
    scene = new_scene()
    nodes = sample_nodes(scene, sample, ("flair",))
    before = node_ids(scene)
    for runner in (ProcessRunner, InProcessRunner):
        logic = SegmentationLogic(scene, runner)
        with pytest.raises(SegmentationFailed) as failure:
            logic.segment(nodes, RunSettings(model=str(damaged / "model.json"), bias_correction=False),
                          probability_map=True)
        message = str(failure.value)
        assert message.startswith("The segmentation failed: ") and "checksum" in message
        assert "Traceback" not in message and "\n" not in message
        assert node_ids(scene) == before
    with pytest.raises(SegmentationFailed, match="not installed"):
        SegmentationLogic(scene).start(nodes, RunSettings(model=str(tmp_path / "missing.json")))
    with pytest.raises(SegmentationFailed, match="Select at least one"):
        SegmentationLogic(scene).start({"t1": None}, RunSettings(model=str(damaged / "model.json")))
    assert node_ids(scene) == before


def test_the_panel_gets_the_shipped_models_warning_for_flair_alone(sample):
    """The background run with the shipped model hands the report's reliability warning, and the probability
    map, to the panel."""
    scene = new_scene()
    options = RunSettings(model=str(default_model_card()), bias_correction=False, tta=False)
    result = SegmentationLogic(scene, ProcessRunner).segment(sample_nodes(scene, sample, ("flair",)), options,
                                                             probability_map=True)
    assert any(w.startswith("from FLAIR alone the tumour core and enhancing tumour are less reliable")
               and w.endswith("adding T1Gd restored them in validation.") for w in result.warnings), result.warnings
    assert result.volumes_ml["whole_tumour"] > 10
    assert result.probability.GetScene() is scene and result.probability.GetImageData() is not None
