"""`export`: turn a training run's checkpoint into the safetensors weights and model card the engine reads."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from braintumorseg.errors import InputError
from braintumorseg.labels import REGIONS
from braintumorseg.modalities import MODALITIES
from braintumorseg.modelcard import ModelCard, export_model, serialized_weights, sha256_of
from braintumorseg.network import build_network
from braintumorseg.output_paths import check_output_folder
from braintumorseg.preprocessing import NormalizationSpec

from .averaging import average_weights, blend_weights, snapshots_from
from .checkpoint import model_weights, weights_origin
from .data import MANIFEST, load_cases, read_manifest
from .files import read_json
from .prepare import manifest_flag
from .train import TrainConfig, mixed_precision, training_device, validate

DATA_NOTE = ("Trained on BraTS challenge training data (expert labels), which are for research use under "
             "the BraTS terms; these weights are for research only, not for clinical decisions.")


@dataclass(frozen=True)
class ExportSettings:
    """What to export from a run folder and how to name it."""

    run: Path
    out: Path
    checkpoint: str = "best"
    name: str = "brats-segresnet"
    version: str = "1.0.0"
    description: str = ("SegResNet predicting overlapping regions (whole tumour, tumour core, enhancing "
                        "tumour; sigmoid outputs, turned into labels NCR/ED/ET by the engine) from any "
                        "subset of T1, T1Gd, T2 and FLAIR (missing channels are zero).")
    license: str = "research use only (weights trained on BraTS data under the BraTS terms)"
    data_note: str = DATA_NOTE
    roi_size: int = 128
    evaluation: Path | None = None
    average_from: int | None = None
    blend: float | None = None  # the run's share in a blend with the weights the finetune started from


def read_config(run: Path) -> TrainConfig:
    """The run's TrainConfig from config.json (keys this version does not know are ignored)."""
    path = run / "config.json"
    if not path.is_file():
        raise InputError(f"{run} is not a training run folder (no config.json); give the --out folder of "
                         "`python -m training train`.")
    data = read_json(path, "train the run again, or give the --out folder of another run")
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in data.items() if k in known})


def downsamplings(config: TrainConfig) -> int:
    """How many times the network halves the grid (SegResNet: one fewer than its levels)."""
    return len(config.architecture().kwargs["blocks_down"]) - 1


def training_summary(config: TrainConfig, manifest: dict[str, Any], run_meta: dict[str, Any],
                     data_note: str) -> dict[str, Any]:
    """Cases per source folder (training and validation), channels and regions seen, steps and time."""
    validation = set(config.validation)
    sources: dict[str, dict[str, Any]] = {}
    for entry in manifest["cases"]:
        source = Path(entry["source"]).parent.name or entry["source"]
        summary = sources.setdefault(source, {"training": 0, "validation": 0, "channels": Counter(),
                                              "regions": Counter()})
        summary["validation" if entry["name"] in validation else "training"] += 1
        summary["channels"]["+".join(entry["channels"])] += 1
        summary["regions"]["+".join(entry["regions"])] += 1
    for summary in sources.values():
        summary["channels"] = dict(summary["channels"])
        summary["regions"] = dict(summary["regions"])
    names = [e["name"] for e in manifest["cases"]]
    return {
        "training_cases": sum(1 for n in names if n not in validation),
        "validation_cases": sorted(validation),
        "by_source": sources,
        "steps": run_meta.get("step"),
        "hours": round(float(run_meta.get("seconds", 0.0)) / 3600, 2),
        "devices": run_meta.get("devices", []),
        "label_conventions": dict(Counter(e["convention"] for e in manifest["cases"])),
        "spacing_mm": manifest["spacing"],
        "normalization": manifest.get("normalization", {}).get("method", "zscore"),
        "bias_correction": manifest_flag(manifest, "bias_correction", True),
        "config": {k: v for k, v in config.__dict__.items() if k not in ("cache", "out", "validation")},
        # runs started before train() recorded the origin: look it up now
        "started_from": (run_meta["started_from"] if "started_from" in run_meta
                         else weights_origin(config.init_weights)),
        "data": data_note,
    }


def chosen_weights(settings: ExportSettings, config: TrainConfig, run_meta: dict[str, Any],
                   network: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the exported weights into `network`: a checkpoint or the mean of late snapshots (SWA), optionally
    blended with the weights the finetune started from (WiSE-FT).

    Returns which steps they come from and their model-grid validation Dice.
    """
    if settings.average_from is not None:
        snapshots = snapshots_from(settings.run, settings.average_from)
        weights = average_weights(list(snapshots.values()))
        selection: dict[str, Any] = {"selected_step": None, "averaged_steps": list(snapshots)}
        metrics = None
    else:
        if settings.checkpoint not in ("best", "checkpoint"):
            raise InputError(f"--checkpoint must be 'best' or 'checkpoint', not '{settings.checkpoint}'.")
        checkpoint = settings.run / settings.checkpoint
        if not checkpoint.with_suffix(".safetensors").is_file():
            advice = ("train the run until its first checkpoint" if settings.checkpoint == "checkpoint" else
                      "best is written at the first validation with validation cases; try --checkpoint checkpoint")
            raise InputError(f"{checkpoint.with_suffix('.safetensors')} does not exist: the run has no "
                             f"'{settings.checkpoint}' checkpoint yet ({advice}).")
        meta = read_json(checkpoint.with_suffix(".json"),
                         "the checkpoint is incomplete; resume the run to write it again")
        weights = model_weights(checkpoint.with_suffix(".safetensors"))
        selection = {"selected_step": meta["step"]}
        metrics = meta.get("best_metrics") if settings.checkpoint == "best" else meta.get("last_metrics")
    if settings.blend is not None:
        weights = blend_weights(start_weights_of(config, run_meta), weights, settings.blend)
        selection["blend"] = {"share": settings.blend, "with": run_meta["started_from"]}
        metrics = None
    network.load_state_dict(weights)
    if metrics is None:
        device = training_device("cpu" if config.device == "cpu" else "auto")  # a saved "cuda" may be absent here
        cases = load_cases(Path(config.cache), config.validation) if config.validation else []
        metrics = validate(network.to(device), cases, device, mixed_precision(config, device)) if cases else {}
        network.cpu()
    return selection, metrics or {}


def start_weights_of(config: TrainConfig, run_meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights a finetune started from, checked by checksum against what the run recorded."""
    if not config.init_weights:
        raise InputError("--blend mixes a finetune with the weights it started from, but this run was trained "
                         "from scratch; export it without --blend.")
    path = Path(config.init_weights)
    expected = (run_meta.get("started_from") or {}).get("sha256")
    if not path.is_file() or sha256_of(path) != expected:
        found = f"{path} has sha256 {sha256_of(path)[:12]}…" if path.is_file() else f"{path} does not exist"
        raise InputError(f"--blend needs the weights the run started from (sha256 {str(expected)[:12]}…), but "
                         f"{found}: run export in the folder the finetune was started from, with those weights.")
    return model_weights(path)


def export_run(settings: ExportSettings) -> ModelCard:
    """Build the run's network, load the chosen (or averaged) weights and write weights + card."""
    if settings.blend is not None and not 0 < settings.blend <= 1:
        raise InputError(f"--blend is the finetune's share of the blended weights, above 0 and at most 1, not "
                         f"{settings.blend}.")
    if not 16 <= settings.roi_size <= 512:
        raise InputError(f"--roi is the sliding-window size in model-grid voxels (16 to 512), not "
                         f"{settings.roi_size}.")
    check_output_folder(settings.out, "--out")
    config = read_config(settings.run)
    manifest_path = Path(config.cache) / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"the run's cache manifest {manifest_path} is missing; the card needs its spacing "
                         "and normalization.")
    manifest = read_manifest(Path(config.cache))
    run_meta = read_json(settings.run / "checkpoint.json", "the run has not reached its first checkpoint; "
                         "train it further")
    network = build_network(config.architecture())
    selection, metrics = chosen_weights(settings, config, run_meta, network)
    multiple = 2 ** downsamplings(config)
    roi = max(multiple, settings.roi_size // multiple * multiple)
    normalization = manifest.get("normalization", {"method": "zscore"})
    training = dict(training_summary(config, manifest, run_meta, settings.data_note), **selection)
    weights = (f"the mean of the weights at steps {selection['averaged_steps'][0]}–"
               f"{selection['averaged_steps'][-1]} ({len(selection['averaged_steps'])} snapshots)"
               if "averaged_steps" in selection else f"the weights of step {selection['selected_step']}")
    if "blend" in selection:
        start = selection["blend"]["with"]
        origin = " ".join(str(v) for v in (start.get("name") or start.get("weights"), start.get("version")) if v)
        weights = (f"{settings.blend:g} × {weights} + {1 - settings.blend:g} × the weights it started from "
                   f"({origin})")
    card = ModelCard(
        name=settings.name, version=settings.version, architecture=config.architecture(),
        channels=list(manifest.get("channels", MODALITIES)), missing_channels="zero",
        spacing=[float(manifest["spacing"])] * 3,
        normalization=NormalizationSpec(normalization["method"], normalization.get("landmarks", {})),
        regions=list(REGIONS), subset_tta=config.modality_dropout > 0, divisible_by=multiple, roi_size=[roi] * 3,
        n4_without_tumour=manifest_flag(manifest, "n4_without_tumour", False),
        description=settings.description,
        license=settings.license, training=training,
        metrics={"validation_model_grid_dice": metrics, "step": selection["selected_step"],
                 "note": f"Dice of {weights} on the {manifest['spacing']} mm model grid of the validation "
                         "cases with the other channels zeroed; `python -m training evaluate` gives Dice/HD95 "
                         "on the original grids."})
    if settings.evaluation:
        digest = hashlib.sha256(serialized_weights(network)).hexdigest()
        card.metrics["evaluation"] = read_evaluation(settings.evaluation, digest)
    card.validate()
    return export_model(network, card, settings.out)


def read_evaluation(folder: Path, sha256: str) -> dict[str, Any]:
    """The means.json that `python -m training evaluate` wrote for these weights: Dice/HD95 per subset and region."""
    path = folder / "means.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist; give the --out folder of `python -m training evaluate`.")
    result = read_json(path, "evaluate the card again with `python -m training evaluate`")
    if not isinstance(result.get("cases"), list) or not isinstance(result.get("means"), dict):
        raise InputError(f"{path} lacks the cases and means that `python -m training evaluate` writes; "
                         "evaluate the card again.")
    if result.get("native_sha256"):
        raise InputError(f"{path} scores a pair of models ({result.get('model')}), not one card's weights: "
                         "evaluate the exported card alone (without --native-model) for its --evaluation.")
    if result.get("sha256") != sha256:
        raise InputError(f"{path} scores other weights ({result.get('model')}, sha256 "
                         f"{str(result.get('sha256'))[:12]}…), not the ones being exported ({sha256[:12]}…): "
                         "export to a scratch folder, evaluate that card, then export with its --evaluation.")
    evaluation = {"cases": result["cases"], "means": result["means"], "pipeline": result.get("pipeline"),
                  "note": "the engine's whole pipeline on the original grids of the validation cases"}
    if "clinical_like" in result:  # evaluate --clinical-like SEED: the same cases made clinical-like
        evaluation["clinical_like"] = {k: result["clinical_like"][k] for k in ("seed", "means")}
    return evaluation
