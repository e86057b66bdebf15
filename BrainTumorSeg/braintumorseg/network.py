"""The network architectures a model card may name, built from MONAI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from monai.networks.nets import DynUNet, SegResNet

from .errors import InputError

ARCHITECTURES = {"SegResNet": SegResNet, "DynUNet": DynUNet}


@dataclass(frozen=True)
class ArchitectureSpec:
    """A MONAI network class name and its keyword arguments."""

    name: str = "SegResNet"
    kwargs: dict[str, Any] = field(default_factory=dict)


def build_network(spec: ArchitectureSpec) -> torch.nn.Module:
    """Instantiate the network a model card describes."""
    if spec.name not in ARCHITECTURES:
        raise InputError(f"model card names architecture '{spec.name}'; this version supports "
                         f"{', '.join(ARCHITECTURES)}. Update BrainTumorSeg or use another model.")
    try:
        return ARCHITECTURES[spec.name](**spec.kwargs)
    except TypeError as error:
        raise InputError(f"model card has invalid arguments for {spec.name}: {error}") from None
