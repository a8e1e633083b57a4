"""SelfReg: internal feature distillation (IFD) and semantic consistency regularisation (SCR) on any backbone.

SelfReg-UNet ("SelfReg-UNet: Self-Regularized UNet for Medical Image Segmentation", MICCAI 2024; code:
ChongQingNoSubway/SelfReg-UNet, ``KDloss`` in ``src/train_synase/trainer_unet.py`` and ``trainer.py``) adds two
feature losses to the supervised loss (docs/methods/selfreg_unet.md#losses), reproduced here as coded:

* ``intra(F)`` (IFD): score each channel by the mean over batch and pixels of ``F`` L2-normalised over ``(H, W)``
  per sample and channel, sort the channels by score (descending) and return the mean squared error between the
  top half and the bottom half (channel ``i`` against channel ``C/2 + i``), without detaching either half. With an
  odd channel count the lowest-scoring channel is left out (the official code would fail on the shape mismatch);
  a one-channel feature contributes 0.
* ``inter(F, final)`` (SCR): average-pool the larger of the two maps to the other's ``(H, W)`` (the official code
  pools to square sizes from the height only), draw ``m = min(C_F, C_final)`` student channels and ``m`` teacher
  channels at random without replacement, and return the MSE between them with the teacher (``final``, the last
  decoder feature before the head) detached. The random channels come from a dedicated ``torch.Generator`` seeded
  with the run's seed (the official code uses Python's ``random``), so a run is reproducible.

Which features. Features are read only through :class:`~medseg.models.SegOutput`:

* encoder group: every ``encoder`` stage output plus the ``bottleneck``;
* decoder group: every ``decoder`` stage output;
* features with the same ``(H, W)`` as ``final`` are left out (and ``final`` itself always is), unless
  ``full_resolution=True``.

For medseg's U-Net this gives the official U-Net lists exactly: encoder ``x2, x3, x4`` + bottleneck ``x5`` (the
full-resolution stem ``x1`` is not distilled) and decoder ``up1, up2, up3`` (``up4`` is ``final``)::

    L = λ_IFD · [ mean_enc intra(f) + mean_dec intra(f) ] + λ_SCR · mean_{dec, then enc} inter(f, final)

which is the official U-Net formula ``(1/4)Σ_4 intra + (1/3)Σ_3 intra + (1/7)Σ_7 inter`` with its single λ split in
two. Models whose stages are stacks of blocks expose every block's output (``SegOutput.encoder_blocks`` and
``decoder_blocks``, Swin-UNet); then the loss is the official Swin-UNet formula, the sum above taken once over the
last block of every stage and once over the first block::

    L = Σ_{p ∈ (last, first)} λ_IFD · [ mean_enc intra(f_p) + mean_dec intra(f_p) ]
                            + λ_SCR · mean_{dec, then enc} inter(f_p, final)

with the encoder stages including the bottleneck stage (its blocks before the final LayerNorm), as coded.

Weights: the paper's λ1 (IFD) and λ2 (SCR), both 0.015 by default. ``single_lambda`` reproduces the released
commands, which put one λ on the sum (``λ·(IFD + SCR)``: 0.015 for Synapse U-Net, 0.010 for the Synapse Swin-UNet
command, 0.1 for ACDC). The λs are part of the term, so its ``loss.terms`` weight stays 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.models.base import SegOutput
from medseg.objectives.base import ObjectiveTerm
from medseg.objectives.registry import TermContext, register_term

__all__ = ["SelfRegTerm", "feature_groups", "intra_feature_distillation", "selfreg", "semantic_consistency"]

DEFAULT_LAMBDA = 0.015


def feature_groups(output: SegOutput, full_resolution: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The encoder-side and decoder-side features that SelfReg and ReSeg use.

    Args:
        output: a model's output; ``final`` must be set.
        full_resolution: keep the features that have the same ``(H, W)`` as ``final`` (``final`` itself is never
            returned).

    Returns:
        ``(encoder stages + bottleneck, shallow to deep; decoder stages, deep to shallow)``.

    Raises:
        ValueError: the output has no ``final`` feature.
    """
    if output.final is None:
        raise ValueError("the model's SegOutput has no `final` feature, which SelfReg and ReSeg need")
    final = output.final
    encoder = list(output.encoder)
    if output.bottleneck is not None and not any(f is output.bottleneck for f in encoder):
        encoder.append(output.bottleneck)
    return _coarser(encoder, final, full_resolution), _coarser(output.decoder, final, full_resolution)


def _coarser(features: Sequence[torch.Tensor], final: torch.Tensor, full_resolution: bool) -> list[torch.Tensor]:
    """The features other than ``final``, without those at ``final``'s resolution unless ``full_resolution``."""
    return [f for f in features if f is not final and (full_resolution or f.shape[-2:] != final.shape[-2:])]


def intra_feature_distillation(feature: torch.Tensor) -> torch.Tensor:
    """IFD: MSE between the top-scoring and the bottom-scoring half of the channels of one feature.

    Args:
        feature: ``(B, C, H, W)``.

    Returns:
        Scalar loss (0 for a one-channel feature).
    """
    half = feature.shape[1] // 2
    if half == 0:
        return feature.new_zeros((), dtype=torch.float32)
    scores = F.normalize(feature, p=2, dim=(2, 3)).mean(dim=(0, 2, 3))
    order = torch.sort(scores, descending=True).indices
    ranked = feature.index_select(1, order)
    return F.mse_loss(ranked[:, :half], ranked[:, half : 2 * half])


def semantic_consistency(feature: torch.Tensor, final: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SCR: MSE between random channels of a feature and random channels of the (detached) final feature.

    Args:
        feature: student feature ``(B, C_s, H_s, W_s)``.
        final: the last decoder feature ``(B, C_t, H_t, W_t)``; pooled (or the student is) to the smaller size.
        generator: CPU generator drawing the channel indices.

    Returns:
        Scalar loss.
    """
    size = (min(feature.shape[-2], final.shape[-2]), min(feature.shape[-1], final.shape[-1]))
    if feature.shape[-2:] != size:
        feature = F.adaptive_avg_pool2d(feature, size)
    if final.shape[-2:] != size:
        final = F.adaptive_avg_pool2d(final, size)
    count = min(feature.shape[1], final.shape[1])
    student = torch.randperm(feature.shape[1], generator=generator)[:count].to(feature.device)
    teacher = torch.randperm(final.shape[1], generator=generator)[:count].to(final.device)
    return F.mse_loss(feature[:, student], final[:, teacher].detach())


def _mean(values: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    if not values:
        return like.new_zeros((), dtype=torch.float32)
    return torch.stack([v.float() for v in values]).mean()


class SelfRegTerm(ObjectiveTerm):
    """``λ_IFD · IFD + λ_SCR · SCR`` over a model's features (see the module docstring for which ones).

    Args:
        lambda_ifd: weight of the internal feature distillation (the paper's λ1).
        lambda_scr: weight of the semantic consistency regularisation (the paper's λ2).
        seed: seed of the generator that draws SCR's channel indices.
        full_resolution: also use the features at the output resolution (see :func:`feature_groups`).
    """

    def __init__(
        self,
        lambda_ifd: float = DEFAULT_LAMBDA,
        lambda_scr: float = DEFAULT_LAMBDA,
        seed: int = 0,
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        self.lambda_ifd = lambda_ifd
        self.lambda_scr = lambda_scr
        self.full_resolution = full_resolution
        self.generator = torch.Generator().manual_seed(seed)

    def components(self, output: SegOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """The unweighted IFD and SCR losses.

        Args:
            output: the model's output.

        Returns:
            ``(IFD, SCR)``: for each feature set of :meth:`feature_sets`, the mean IFD over its encoder group plus
            the mean IFD over its decoder group, and the mean SCR over its decoder then encoder group (the official
            order of the random draws), summed over the sets.

        Raises:
            ValueError: the model exposes no usable feature.
        """
        groups = self.feature_sets(output)
        final = output.final
        assert final is not None  # checked by feature_groups
        ifd = scr = final.new_zeros((), dtype=torch.float32)
        for encoder, decoder in groups:
            ifd = ifd + _mean([intra_feature_distillation(f) for f in encoder], final)
            ifd = ifd + _mean([intra_feature_distillation(f) for f in decoder], final)
            scr = scr + _mean([semantic_consistency(f, final, self.generator) for f in [*decoder, *encoder]], final)
        return ifd, scr

    def feature_sets(self, output: SegOutput) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """The (encoder, decoder) feature lists the loss is summed over.

        Args:
            output: the model's output.

        Returns:
            One pair, :func:`feature_groups`, for models with one feature per stage; for models that expose their
            blocks, two pairs: the last block of every stage, then the first block (both without the features at
            ``final``'s resolution unless ``full_resolution``).

        Raises:
            ValueError: the model exposes no usable feature.
        """
        encoder, decoder = feature_groups(output, self.full_resolution)
        if not encoder and not decoder:
            raise ValueError("SelfReg found no encoder or decoder feature coarser than the model's `final` feature")
        if not (output.encoder_blocks and output.decoder_blocks):
            return [(encoder, decoder)]
        final = output.final
        assert final is not None
        sets = []
        for position in (-1, 0):
            encoder = _coarser([blocks[position] for blocks in output.encoder_blocks], final, self.full_resolution)
            decoder = _coarser([blocks[position] for blocks in output.decoder_blocks], final, self.full_resolution)
            sets.append((encoder, decoder))
        return sets

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Compute the weighted SelfReg loss.

        Args:
            output: the model's output.
            batch: the batch (unused: SelfReg needs no labels).

        Returns:
            Scalar loss.
        """
        ifd, scr = self.components(output)
        return self.lambda_ifd * ifd + self.lambda_scr * scr


@register_term("selfreg")
def selfreg(
    context: TermContext,
    lambda_ifd: float | None = None,
    lambda_scr: float | None = None,
    single_lambda: float | None = None,
    full_resolution: bool = False,
) -> SelfRegTerm:
    """Build the SelfReg term (``loss.terms[].name: selfreg``, weight 1).

    Args:
        context: the run's context; its seed seeds the SCR channel draws.
        lambda_ifd: IFD weight (default 0.015).
        lambda_scr: SCR weight (default 0.015).
        single_lambda: one λ on ``IFD + SCR`` as in the released commands; excludes the two weights above.
        full_resolution: see :func:`feature_groups`.

    Returns:
        The term.

    Raises:
        MedsegError: ``single_lambda`` given together with ``lambda_ifd`` or ``lambda_scr``.
    """
    if single_lambda is not None:
        if lambda_ifd is not None or lambda_scr is not None:
            raise MedsegError("selfreg: give either single_lambda or lambda_ifd/lambda_scr, not both")
        lambda_ifd = lambda_scr = single_lambda
    return SelfRegTerm(
        DEFAULT_LAMBDA if lambda_ifd is None else lambda_ifd,
        DEFAULT_LAMBDA if lambda_scr is None else lambda_scr,
        context.seed,
        full_resolution,
    )
