"""The run settings: one definition gives the command line, the process runner's arguments and the panel's."""

from __future__ import annotations

import argparse
import ast
from dataclasses import fields

import pytest

from braintumorseg.settings import DEFAULTS, RunSettings, add_arguments, choices, flags, value_range

from conftest import ROOT


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return RunSettings.from_namespace(parser.parse_args(argv))


def test_defaults_parse_to_the_defaults():
    assert parse([]) == DEFAULTS


def test_to_argv_round_trips_every_setting():
    changed = RunSettings(model="/m/card.json", device="cpu", bias_correction=False, register="on",
                          network_space="atlas", skull_strip="off", tta=False, fp32=True, min_cluster_ml=0.25,
                          label_convention="brats2023", threads=3, brain_extraction="deepbet",
                          trust_sequences=True)
    assert {f.name for f in fields(RunSettings)} == {
        f.name for f in fields(RunSettings) if getattr(changed, f.name) != getattr(DEFAULTS, f.name)}
    assert parse(changed.to_argv()) == changed
    assert parse(DEFAULTS.to_argv()) == DEFAULTS


def test_older_spellings_still_parse():
    settings = parse(["--no-bias-correction", "--register", "--no-tta", "--fp32", "--min-cluster-ml", "0.5"])
    assert (settings.bias_correction, settings.register, settings.tta, settings.fp32, settings.min_cluster_ml) == (
        False, "on", False, True, 0.5)


@pytest.mark.parametrize("argv", [["--min-cluster-ml", "-1"], ["--min-cluster-ml", "x"], ["--threads", "0"],
                                  ["--device", "tpu"], ["--skull-strip", "maybe"], ["--min-cluster-ml", "101"]])
def test_out_of_range_values_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse(argv)
    assert "argument" in capsys.readouterr().err


def test_from_parameters_reads_the_panel_names():
    values = {"device": "cpu", "biasCorrection": False, "registerMode": "on", "skullStrip": "on",
              "testTimeAugmentation": False, "minimumClusterMl": 2.0}
    settings = RunSettings.from_parameters(values.__getitem__, model="card.json")
    assert settings == RunSettings(model="card.json", device="cpu", bias_correction=False, register="on",
                                   skull_strip="on", tta=False, min_cluster_ml=2.0)


def test_the_parameter_node_declares_each_panel_setting_from_here():
    """Every setting with a parameter name is declared in the module's parameter node, with its default taken from
    `DEFAULTS` and its choices or range from `choices` / `value_range` (never written again)."""
    tree = ast.parse((ROOT / "BrainTumorSeg" / "BrainTumorSeg.py").read_text())
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "BrainTumorSegParameterNode")
    declared = {item.target.id: item for item in node.body if isinstance(item, ast.AnnAssign)}
    for name, flag in flags().items():
        if not flag.parameter:
            continue
        item = declared[flag.parameter]
        assert ast.unparse(item.value) == f"DEFAULTS.{name}", flag.parameter
        annotation = ast.unparse(item.annotation)
        if flag.choices:
            assert f"Choice(choices('{name}'))" in annotation
            assert choices(name) == list(flag.choices)
        if flag.minimum is not None and flag.maximum is not None:
            assert f"WithinRange(*value_range('{name}'))" in annotation
            assert value_range(name) == (flag.minimum, flag.maximum)
