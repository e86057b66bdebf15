"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from braintumorseg.modelcard import sha256_of
from safetensors.torch import load_file, save_file


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict[str, Any]) -> None:
    """Write model and optimizer tensors (.safetensors) and the rest (.json) atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    temporary = path.with_suffix(".partial.safetensors")
    save_file(tensors, str(temporary))
    os.replace(temporary, path.with_suffix(".safetensors"))
    meta = dict(meta, param_groups=state["param_groups"])
    temporary_json = path.with_suffix(".partial.json")
    temporary_json.write_text(json.dumps(meta, indent=1))
    os.replace(temporary_json, path.with_suffix(".json"))


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Restore model (and optimizer) from a checkpoint; returns its JSON metadata."""
    tensors = load_file(str(path.with_suffix(".safetensors")))
    meta = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    """Only the model tensors of a checkpoint (or of a plain weights file)."""
    tensors = load_file(str(path))
    if any(k.startswith("model.") for k in tensors):
        return {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors


def weights_origin(init_weights: str) -> dict[str, Any] | None:
    """What a finetune starts from: the card beside the weights with their checksum, else the file."""
    if not init_weights:
        return None
    weights = Path(init_weights)
    if not weights.is_file():
        return {"weights": str(weights), "sha256": None}
    digest = sha256_of(weights)
    for path in sorted(weights.parent.glob("*.json")):
        try:
            card = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(card, dict) and card.get("sha256") == digest:
            training = card.get("training", {})
            return {"name": card.get("name"), "version": card.get("version"), "sha256": digest,
                    "steps": training.get("steps"), "hours": training.get("hours")}
    return {"weights": weights.name, "sha256": digest}
