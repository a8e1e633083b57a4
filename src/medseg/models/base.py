"""The feature contract every medseg model follows.

Every model is a :class:`SegmentationModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns a
:class:`SegOutput` holding the logits together with the encoder, bottleneck and decoder features in NCHW layout.
Training objectives (deep supervision, SelfReg, ReSeg, balance losses) read features only through this contract,
so any objective works with any backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["SegOutput", "SegmentationModel"]


@dataclass
class SegOutput:
    """Everything a model exposes for one forward pass.

    Attributes:
        logits: main prediction ``(B, num_classes, H, W)``, never activated.
        encoder: encoder stage outputs ordered shallow to deep, each NCHW.
        bottleneck: the deepest feature map ``(B, C, h, w)``.
        decoder: decoder stage outputs ordered deep to shallow, each NCHW.
        final: the last decoder feature before the segmentation head ``(B, c, H, W)``.
        aux_logits: deep-supervision predictions (any resolution), empty when the model has none.
        aux_losses: scalar losses the model defines itself (e.g. a mixture-of-experts balance loss).
        encoder_blocks: for models whose stages are stacks of blocks (Swin-UNet), the output of every block of every
            encoder stage, the bottleneck stage last (``encoder_blocks[s][b]``, NCHW); empty for other models.
        decoder_blocks: the same for the decoder stages, deep to shallow; empty for other models.
    """

    logits: torch.Tensor
    encoder: list[torch.Tensor] = field(default_factory=list)
    bottleneck: torch.Tensor | None = None
    decoder: list[torch.Tensor] = field(default_factory=list)
    final: torch.Tensor | None = None
    aux_logits: list[torch.Tensor] = field(default_factory=list)
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    encoder_blocks: list[list[torch.Tensor]] = field(default_factory=list)
    decoder_blocks: list[list[torch.Tensor]] = field(default_factory=list)


class SegmentationModel(nn.Module):
    """Base class of every registered model.

    Subclasses set ``in_channels``, ``num_classes`` and ``output_stride`` and implement :meth:`forward_features`.
    ``num_classes`` is the number of output channels: 1 for a binary (sigmoid) task, K for a K-class softmax task.

    Attributes:
        in_channels: number of image channels the model expects.
        num_classes: number of logit channels.
        output_stride: input height and width must be multiples of this number.
    """

    in_channels: int
    num_classes: int
    output_stride: int = 1

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run the network and return logits with all intermediate features.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of ``output_stride``.

        Returns:
            The :class:`SegOutput` of this pass.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(B, num_classes, H, W)`` for an image batch."""
        return self.forward_features(x).logits

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``ValueError`` that says what is wrong when ``x`` does not fit the model.

        Args:
            x: image batch to check.
        """
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, got {x.shape[1]}")
        height, width = x.shape[-2:]
        if height % self.output_stride or width % self.output_stride:
            raise ValueError(
                f"{type(self).__name__} needs height and width divisible by {self.output_stride}, "
                f"got {height}x{width}; pad the input (medseg.inference.Predictor does this)"
            )
