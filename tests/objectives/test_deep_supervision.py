"""Deep supervision term: weights, resizing of the auxiliary logits, ASC-Seg's summed BceDice by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medseg.models import SegOutput
from medseg.objectives import DiceCELoss
from medseg.objectives.deep_supervision import DeepSupervisionTerm, deep_supervision
from medseg.objectives.registry import TermContext


class MeanLogit(nn.Module):
    """A loss that reveals what it was given: mean logit plus 10 times the mean mask."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.mean() + 10 * target.float().mean()


def test_weights_and_bilinear_align_corners_resize() -> None:
    logits = torch.full((1, 1, 3, 3), 2.0)
    aux_small = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # -> 3x3 with align_corners: mean stays 1.5
    aux_tiny = torch.full((1, 1, 1, 1), -4.0)
    mask = torch.tensor([[[1, 0, 0], [0, 0, 0], [0, 0, 0]]])  # mean 1/9
    term = DeepSupervisionTerm(MeanLogit(), [1.0, 0.5, 2.0])
    value = term(SegOutput(logits=logits, aux_logits=[aux_small, aux_tiny]), {"mask": mask})
    target = 10 / 9
    expected = 1.0 * (2.0 + target) + 0.5 * (1.5 + target) + 2.0 * (-4.0 + target)
    torch.testing.assert_close(value, torch.tensor(expected))


def test_the_resize_is_bilinear_with_aligned_corners() -> None:
    seen = []

    class Record(nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            seen.append(logits)
            return logits.sum()

    aux = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    DeepSupervisionTerm(Record(), [0.0, 1.0])(
        SegOutput(logits=torch.zeros(1, 1, 3, 3), aux_logits=[aux]), {"mask": torch.zeros(1, 3, 3, dtype=torch.long)}
    )
    assert len(seen) == 1  # the main prediction has weight 0 and is skipped
    torch.testing.assert_close(seen[0], torch.tensor([[[[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]]]))


def test_asc_seg_loss_is_four_bce_dice_terms() -> None:
    """Logits 0 (p = 0.5) everywhere, a 2x2 mask with 3 foreground pixels, four heads at 2x2, 1x1, 1x1, 1x1.

    BCE = ln 2 for every head; Dice = (2 · 1.5 + ε) / (2 + 3 + ε); BceDice = 0.5 BCE + 0.5 (1 - Dice).
    """
    mask = torch.tensor([[[1, 1], [1, 0]]])
    heads = [torch.zeros(1, 1, 2, 2)] + [torch.zeros(1, 1, 1, 1)] * 3
    term = DeepSupervisionTerm(DiceCELoss(binary=True, dice_weight=0.5, ce_weight=0.5), [1, 1, 1, 1])
    value = term(SegOutput(logits=heads[0], aux_logits=heads[1:]), {"mask": mask})
    eps = 1e-5
    dice = (2 * 1.5 + eps) / (2 + 3 + eps)
    expected = 4 * (0.5 * math.log(2) + 0.5 * (1 - dice))
    torch.testing.assert_close(value, torch.tensor(expected))


def test_weight_count_must_match_the_heads() -> None:
    term = DeepSupervisionTerm(MeanLogit(), [1.0, 1.0])
    with pytest.raises(ValueError, match="2 weights but the model gives 1 predictions"):
        term(SegOutput(logits=torch.zeros(1, 1, 2, 2)), {"mask": torch.zeros(1, 2, 2, dtype=torch.long)})
    with pytest.raises(ValueError, match="non-negative"):
        DeepSupervisionTerm(MeanLogit(), [1.0, -1.0])


def test_registered_factory_reuses_the_run_loss() -> None:
    seg_loss = MeanLogit()
    term = deep_supervision(TermContext(True, seg_loss, 0, 2), weights=[0, 1])
    assert term.loss is seg_loss and term.weights == [0.0, 1.0]
    aux = torch.ones(1, 1, 1, 1, requires_grad=True)
    value = term(SegOutput(logits=torch.zeros(1, 1, 2, 2), aux_logits=[aux]), {"mask": torch.zeros(1, 2, 2)})
    torch.testing.assert_close(value, torch.tensor(1.0))
    value.backward()
    torch.testing.assert_close(aux.grad, torch.ones(1, 1, 1, 1))
