"""Weight averaging: the mean of a run's late snapshots (SWA), and a finetune blended with its start (WiSE-FT)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from braintumorseg.errors import InputError
from braintumorseg.modelcard import serialized_weights
from braintumorseg.output_paths import write_bytes_atomic

from .checkpoint import model_weights

SNAPSHOT = re.compile(r"step_(\d+)\.safetensors")


def snapshot_path(run: Path, step: int) -> Path:
    """Where a run keeps the weights of one step."""
    return run / "snapshots" / f"step_{step:06d}.safetensors"


def save_snapshot(run: Path, model: torch.nn.Module, step: int) -> None:
    """Keep this step's model weights (no optimizer state) for averaging later."""
    write_bytes_atomic(serialized_weights(model), snapshot_path(run, step))


def snapshots_from(run: Path, first_step: int) -> dict[int, Path]:
    """The run's snapshots at or after `first_step`, by step; at least two, or a clear error."""
    found = {int(m.group(1)): p for p in (run / "snapshots").glob("step_*.safetensors")
             if (m := SNAPSHOT.fullmatch(p.name))}
    chosen = {step: path for step, path in sorted(found.items()) if step >= first_step}
    if len(chosen) < 2:
        kept = f"steps {min(found)}–{max(found)}" if found else "none"
        raise InputError(f"--average-from {first_step} leaves {len(chosen)} snapshot(s) in {run / 'snapshots'} "
                         f"(kept: {kept}); averaging needs two or more: lower --average-from, or train with "
                         "--snapshot-every N.")
    return chosen


def average_weights(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating-point tensors (in float64); other tensors must agree and are kept."""
    total: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for path in paths:
        weights = model_weights(path)
        if first and set(weights) != set(first):
            raise InputError(f"{path.name} holds other tensors than {paths[0].name}: not the same network.")
        for key, value in weights.items():
            if not value.is_floating_point():
                if key in first and not torch.equal(first[key], value):
                    raise InputError(f"{path.name} differs from {paths[0].name} in the integer tensor {key}.")
            else:
                total[key] = total.get(key, 0) + value.double()
            first.setdefault(key, value)
    return {k: (total[k] / len(paths)).to(v.dtype) if k in total else v for k, v in first.items()}


def blend_weights(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                  share: float) -> dict[str, torch.Tensor]:
    """(1 − share) · start + share · tuned, element-wise in float64 (Wortsman et al. 2022, WiSE-FT)."""
    if set(start) != set(tuned):
        raise InputError("the finetune's weights hold other tensors than the weights it started from: "
                         "not the same network.")
    blended = {}
    for key, value in tuned.items():
        if value.is_floating_point():
            blended[key] = ((1 - share) * start[key].double() + share * value.double()).to(value.dtype)
        elif torch.equal(start[key], value):
            blended[key] = value
        else:
            raise InputError(f"the finetune differs from the weights it started from in the integer tensor {key}.")
    return blended
