"""Region losses that ignore regions a case is not labelled for (whole-tumour-only cases)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, GeneralizedDiceLoss

LOSSES = ("dice_bce", "wce", "gdice")


class RegionLoss(torch.nn.Module):
    """Dice + BCE (default), weighted BCE ("wce") or generalized Dice ("gdice") over WT/TC/ET.

    `present` (batch, regions) is 1 where the case is labelled for that region, 0 elsewhere.
    """

    def __init__(self, kind: str = "dice_bce", positive_weight: float = 5.0):
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss '{kind}'; use one of {', '.join(LOSSES)}")
        self.kind = kind
        self.positive_weight = positive_weight
        self.dice = DiceLoss(sigmoid=True, reduction="none")
        self.generalized = GeneralizedDiceLoss(sigmoid=True, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weight = present.clamp(min=0.0)
        denominator = weight.sum().clamp(min=1.0)
        bce = F.binary_cross_entropy_with_logits(
            logits, target, reduction="none",
            pos_weight=torch.tensor(self.positive_weight if self.kind == "wce" else 1.0))
        bce = (bce.flatten(2).mean(2) * weight).sum() / denominator
        if self.kind == "wce":
            return bce
        if self.kind == "gdice":
            mask = weight[:, :, None, None, None]
            return self.generalized(logits * mask - 1e4 * (1 - mask), target * mask).mean()
        dice = self.dice(logits, target).flatten(1)
        return (dice * weight).sum() / denominator + bce
