"""The region loss: regions a case is not labelled for get no gradient."""

from __future__ import annotations

import pytest
import torch

from training.losses import LOSSES, RegionLoss


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 8, 8, 8, generator=generator, requires_grad=True)
    target = (torch.rand(2, 3, 8, 8, 8, generator=generator) > 0.7).float()
    present = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # second case: whole tumour only
    return logits, target, present


@pytest.mark.parametrize("kind", LOSSES)
def test_unlabelled_regions_get_no_gradient(kind):
    logits, target, present = _batch()
    RegionLoss(kind)(logits, target, present).backward()
    gradient = logits.grad
    assert torch.count_nonzero(gradient[1, 1:]) == 0          # WT-only case: TC and ET untouched
    assert torch.count_nonzero(gradient[1, 0]) > 0            # ... but WT learns
    assert torch.count_nonzero(gradient[0]) > 0 and torch.count_nonzero(gradient[0, 2]) > 0


@pytest.mark.parametrize("kind", LOSSES)
def test_loss_does_not_depend_on_unlabelled_regions(kind):
    logits, target, present = _batch()
    loss = RegionLoss(kind)(logits, target, present)
    other_logits, other_target = logits.detach().clone(), target.clone()
    other_logits[1, 1:] = torch.randn(2, 8, 8, 8) * 5
    other_target[1, 1:] = 1 - other_target[1, 1:]
    assert torch.allclose(RegionLoss(kind)(other_logits, other_target, present), loss.detach(), atol=1e-6)
    changed = logits.detach().clone()
    changed[1, 0] += 3.0
    assert not torch.allclose(RegionLoss(kind)(changed, target, present), loss.detach())
