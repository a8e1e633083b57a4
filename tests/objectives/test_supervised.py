from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.config import ConfigError, load_config
from medseg.errors import MedsegError
from medseg.models import SegOutput
from medseg.objectives import (
    DiceCELoss,
    Objective,
    ObjectiveTerm,
    SegmentationTerm,
    build_objective,
    register_term,
    registry,
    soft_dice_loss,
)


def test_soft_dice_perfect_and_disjoint() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    assert soft_dice_loss(target, target).item() < 1e-6
    assert abs(soft_dice_loss(1 - target, target).item() - 1) < 1e-5
    empty = torch.zeros(1, 1, 4, 4)
    assert soft_dice_loss(empty, empty).item() < 1e-6


def test_binary_loss_matches_manual_formula() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 8, 8) > 0.5).long()
    probs = torch.sigmoid(logits)[:, 0]
    bce = F.binary_cross_entropy(probs, target.float())
    inter = (probs * target).sum((1, 2))
    dice = 1 - ((2 * inter + 1e-5) / (probs.sum((1, 2)) + target.sum((1, 2)) + 1e-5)).mean()
    loss = DiceCELoss(binary=True, dice_weight=0.3, ce_weight=0.7)(logits, target)
    torch.testing.assert_close(loss, 0.7 * bce + 0.3 * dice)


def test_multiclass_loss_excludes_background_by_default() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    ce_only = DiceCELoss(binary=False, dice_weight=0.0, ce_weight=1.0)(logits, target)
    torch.testing.assert_close(ce_only, F.cross_entropy(logits, target))
    without_bg = DiceCELoss(binary=False, dice_weight=1.0, ce_weight=0.0)(logits, target)
    with_bg = DiceCELoss(binary=False, dice_weight=1.0, ce_weight=0.0, include_background=True)(logits, target)
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(without_bg, soft_dice_loss(probs[:, 1:], onehot[:, 1:]))
    torch.testing.assert_close(with_bg, soft_dice_loss(probs, onehot))


def test_objective_adds_weighted_terms_and_model_aux_losses() -> None:
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    batch = {"mask": (torch.rand(2, 8, 8) > 0.5).long()}
    output = SegOutput(logits=logits, aux_losses={"balance": torch.tensor(0.25)})
    objective = Objective({"seg": (2.0, SegmentationTerm(DiceCELoss(True)))})
    total, parts = objective(output, batch)
    assert set(parts) == {"seg", "balance"}
    torch.testing.assert_close(total, 2.0 * parts["seg"] + 0.25)
    total.backward()
    assert logits.grad is not None
    default_total, _ = build_objective(load_config(None))(SegOutput(logits=logits), batch)
    torch.testing.assert_close(default_total, parts["seg"])


class ScaledLogits(ObjectiveTerm):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, output: SegOutput, batch: dict) -> torch.Tensor:
        return self.scale * output.logits.mean()


def test_configured_terms_are_built_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.TERMS, "_entries", dict(registry.TERMS._entries))
    register_term("scaled_logits")(lambda context, scale=1.0: ScaledLogits(scale))
    config = load_config(None, ["loss.terms=[{name: scaled_logits, weight: 0.5, params: {scale: 4.0}}]"])
    logits = torch.ones(1, 1, 4, 4)
    total, parts = build_objective(config)(SegOutput(logits=logits), {"mask": torch.ones(1, 4, 4, dtype=torch.long)})
    assert parts["scaled_logits"].item() == 4.0
    torch.testing.assert_close(total, parts["seg"] + 2.0)
    with pytest.raises(MedsegError, match=r"unknown parameter\(s\) factor; valid: scale"):
        build_objective(load_config(None, ["loss.terms=[{name: scaled_logits, params: {factor: 2}}]"]))
    with pytest.raises(MedsegError, match="unknown objective term 'nope'"):
        build_objective(load_config(None, ["loss.terms=[{name: nope}]"]))
    with pytest.raises(ConfigError, match="must be unique"):
        load_config(None, ["loss.terms=[{name: a}, {name: a}]"])
