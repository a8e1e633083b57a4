"""The feature contract every medseg model follows.

Every model is a :class:`SegmentationModel`: ``forward(x)`` returns logits and ``forward_features(x)`` returns a
:class:`SegOutput` holding the logits together with the encoder, bottleneck and decoder features in NCHW layout.
Training objectives (deep supervision, SelfReg, ReSeg, balance losses) read features only through this contract,
so any objective works with any backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

__all__ = ["SegOutput", "SegmentationModel", "nearest_valid_sizes", "stride_problem"]


def nearest_valid_sizes(size: int, stride: int) -> tuple[int, ...]:
    """The multiples of ``stride`` nearest to ``size``: the one below (when positive) and the one above.

    Args:
        size: a height, width or training size in pixels.
        stride: the model's output stride.

    Returns:
        One or two sizes, smallest first.
    """
    below = size // stride * stride
    return (below, below + stride) if below > 0 else (stride,)


def stride_problem(sizes: dict[str, int], stride: int) -> str | None:
    """What is wrong with sizes that a model of output stride ``stride`` cannot take, or ``None`` when they fit.

    Args:
        sizes: name -> size, e.g. ``{"height": 100, "width": 64}`` or ``{"data.image_size": 100}``.
        stride: the model's output stride.

    Returns:
        E.g. ``"height 100 is not divisible by the output stride 16 (nearest valid sizes: 96 or 112)"``.
    """
    problems = [
        f"{name} {size} is not divisible by the output stride {stride} (nearest valid sizes: "
        f"{' or '.join(str(valid) for valid in nearest_valid_sizes(size, stride))})"
        for name, size in sizes.items()
        if size % stride
    ]
    return "; ".join(problems) or None


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
        export_limits: what ``medseg export`` (:mod:`medseg.inference.export`) cannot give for this architecture,
            each with the reason: ``onnx`` or ``torchscript`` (the format), ``dynamic_shape`` (an exported model
            that takes other input sizes than the one it was exported at). Empty: every format, any size.
    """

    in_channels: int
    num_classes: int
    output_stride: int = 1
    export_limits: ClassVar[dict[str, str]] = {}

    def forward_features(self, x: torch.Tensor) -> SegOutput:
        """Run the network and return logits with all intermediate features.

        Args:
            x: image batch ``(B, in_channels, H, W)``, H and W multiples of ``output_stride``.

        Returns:
            The :class:`SegOutput` of this pass.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(B, num_classes, H, W)`` for an image batch.

        The input is checked first (:meth:`check_input`), except while the model is traced, scripted or compiled.

        Raises:
            ValueError: a batch of another rank or channel count, or a height or width that is not a multiple of
                ``output_stride``.
        """
        if not (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            self.check_input(x)
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
        height, width = (int(side) for side in x.shape[-2:])
        problem = stride_problem({"height": height, "width": width}, self.output_stride)
        if problem is not None:
            raise ValueError(
                f"{type(self).__name__} got a {height}x{width} input: {problem}; pad the input "
                "(medseg.inference.Predictor does this) or train at a valid data.image_size"
            )
