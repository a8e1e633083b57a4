"""Deep supervision: one supervised loss applied to the main prediction and to every auxiliary head.

For a model whose :class:`~medseg.models.SegOutput` holds ``logits`` and ``aux_logits = [a_1, ..., a_k]``::

    L = w_0 · loss(logits, mask) + Σ_i w_i · loss(up(a_i), mask)

where ``up`` resizes the logits of a head to the mask size, **bilinearly with** ``align_corners=True``. The logits
are resized, not the mask: this follows ASC-Seg's official code (ILoveBSPC/ASC-Seg, ``models/Decoder.py``,
``train_val_epoch.py``), whose heads up-sample the decoder feature to the input size before their 1x1 convolution
and sigmoid, so every head is compared with the full-resolution mask. A 1x1 convolution commutes with bilinear
interpolation (whose weights sum to 1), so resizing a head's logits gives the official numbers exactly, while
down-sampling the mask would change the targets (soft or aliased small structures) and the loss.

ASC-Seg's loss (docs/methods/asc_seg.md#loss) is BceDice (0.5 BCE + 0.5 Dice, BSPC version) summed over its four heads
with weight 1 each: ``DeepSupervisionTerm(DiceCELoss(binary=True), [1, 1, 1, 1])``. A run's objective already holds the
supervised loss on ``logits`` (the ``seg`` term), so a config adds the three auxiliary heads with the main weight at
0: ``loss.terms: [{name: deep_supervision, params: {weights: [0, 1, 1, 1]}}]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.base import SegOutput
from medseg.objectives.base import ObjectiveTerm
from medseg.objectives.registry import TermContext, register_term

__all__ = ["DeepSupervisionTerm", "deep_supervision"]


class DeepSupervisionTerm(ObjectiveTerm):
    """Weighted sum of one loss over the main logits and the auxiliary heads, each resized to the mask.

    Args:
        loss: a module mapping ``(logits (B, K, H, W), mask (B, H, W))`` to a scalar (e.g.
            :class:`~medseg.objectives.DiceCELoss`).
        weights: one weight per prediction: the main ``logits`` first, then ``aux_logits`` in the model's order.
            Predictions with weight 0 are not evaluated.
        align_corners: ``align_corners`` of the bilinear resize (``True`` as in ASC-Seg's heads).
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float], align_corners: bool = True) -> None:
        super().__init__()
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"deep supervision needs one non-negative weight per prediction, got {list(weights)}")
        self.loss = loss
        self.weights = [float(w) for w in weights]
        self.align_corners = align_corners

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Compute the weighted sum.

        Args:
            output: the model's output; ``1 + len(aux_logits)`` must equal the number of weights.
            batch: the batch, with ``mask`` ``(B, H, W)``.

        Returns:
            Scalar loss.

        Raises:
            ValueError: the number of weights does not match the number of predictions.
        """
        predictions = [output.logits, *output.aux_logits]
        if len(predictions) != len(self.weights):
            raise ValueError(
                f"deep supervision has {len(self.weights)} weights but the model gives {len(predictions)} predictions "
                f"(logits + {len(output.aux_logits)} aux_logits)"
            )
        mask = batch["mask"]
        size = tuple(mask.shape[-2:])
        total = output.logits.new_zeros((), dtype=torch.float32)
        for weight, logits in zip(self.weights, predictions, strict=True):
            if weight == 0:
                continue
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=self.align_corners)
            total = total + weight * self.loss(logits, mask)
        return total


@register_term("deep_supervision")
def deep_supervision(context: TermContext, weights: Sequence[float], align_corners: bool = True) -> DeepSupervisionTerm:
    """Build the deep-supervision term over the run's supervised loss (``loss.terms[].name: deep_supervision``).

    Args:
        context: the run's context; its ``seg_loss`` is applied to every head.
        weights: per-prediction weights, main logits first (0 there when the ``seg`` term already covers them).
        align_corners: see :class:`DeepSupervisionTerm`.

    Returns:
        The term.
    """
    return DeepSupervisionTerm(context.seg_loss, weights, align_corners)
