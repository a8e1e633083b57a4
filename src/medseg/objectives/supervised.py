"""Supervised segmentation losses on logits: soft Dice combined with (binary) cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiceCELoss", "soft_dice_loss"]


def soft_dice_loss(probs: torch.Tensor, target_onehot: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """One minus the soft Dice, computed per image and class, then averaged.

    Args:
        probs: probabilities ``(B, K, H, W)``.
        target_onehot: one-hot (or soft) targets of the same shape.
        smooth: added to numerator and denominator, so that an empty class predicted empty scores 1.

    Returns:
        Scalar loss.
    """
    dims = tuple(range(2, probs.ndim))
    intersection = (probs * target_onehot).sum(dims)
    denominator = probs.sum(dims) + target_onehot.sum(dims)
    return 1 - ((2 * intersection + smooth) / (denominator + smooth)).mean()


class DiceCELoss(nn.Module):
    """Weighted soft Dice plus cross-entropy.

    A binary task (one logit channel) uses sigmoid and BCE; a multi-class task uses softmax and CE, and its Dice
    averages over the foreground classes unless ``include_background`` is set.

    Args:
        binary: whether the logits have a single sigmoid channel.
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        include_background: multi-class only: include class 0 in the Dice average.
    """

    def __init__(
        self, binary: bool, dice_weight: float = 0.5, ce_weight: float = 0.5, include_background: bool = False
    ) -> None:
        super().__init__()
        self.binary = binary
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.include_background = include_background

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            logits: ``(B, K, H, W)`` raw scores (K = 1 for a binary task).
            target: ``(B, H, W)`` integer class indices.

        Returns:
            Scalar loss.
        """
        logits = logits.float()
        if self.binary:
            target_onehot = target.unsqueeze(1).to(logits.dtype)
            ce = F.binary_cross_entropy_with_logits(logits, target_onehot)
            dice = soft_dice_loss(torch.sigmoid(logits), target_onehot)
        else:
            ce = F.cross_entropy(logits, target)
            target_onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
            probs = torch.softmax(logits, dim=1)
            first = 0 if self.include_background else 1
            dice = soft_dice_loss(probs[:, first:], target_onehot[:, first:])
        return self.ce_weight * ce + self.dice_weight * dice
