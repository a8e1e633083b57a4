"""ReSeg: cross alignment of a segmentation network with a frozen label-map-to-image network (stage 2).

ReSeg-UNet (MICCAI 2025; code: Li-gzhu/ReSeg-UNet, ``UNet.zip`` -> ``train_unet_se.py``, ``train_se_tr_ACDC.py``)
trains in two stages (docs/methods/reseg_unet.md#stage-1). Stage 1 (:mod:`medseg.objectives.reconstruction`) trains a
network of the same architecture to map the ground-truth label map to the image. Stage 2 trains the segmentation network
with::

    L = L_seg + λ · L_align,   L_align = (E1 + E2 + E3 + D1 + D2 + D3 + M) / 3,   λ = 0.035

where every term is an MSE (mean over B·C·H·W) between a student feature and a feature of the frozen stage-1 network
(the teacher), fed the label map of the same augmented sample, encoded as in stage 1:

* ``E_k``: student encoder feature <-> teacher decoder feature at the same resolution;
* ``D_k``: student decoder feature <-> teacher encoder feature at the same resolution;
* ``M`` (the bridge): student <-> teacher first decoder output (``bridge="first_decoder"``, the official U-Net
  code's ``up1``) or bottleneck (``bridge="bottleneck"``, what the leftover transformer files use). The default is
  ``first_decoder`` whatever the backbone (it does not depend on the model); transformer recipes set ``bottleneck``.

``k`` counts matched resolutions from the deepest. Pairs are found by spatial size from the two
:class:`~medseg.models.SegOutput` objects, so any backbone works. The candidate features are those of
:func:`medseg.objectives.selfreg.feature_groups`: encoder stages + bottleneck, decoder stages, without the features
at the output resolution. For medseg's U-Net this gives the official table exactly (E: x4/x3/x2 <-> up1/up2/up3,
D the reverse, M = up1; the stem x1 and the last stage up4 are not aligned). Where one resolution holds two
candidates of a group, the deeper one is used. The divisor is the constant 3 of the official code, whatever the
number of matched resolutions.

Where channel counts differ (TransUNet's CNN skips against its decoder), the wider feature is reduced to the
narrower count by averaging groups of consecutive channels (parameter-free, the default; for a non-divisible count
the groups are the adaptive-average-pooling windows over the channel axis), or, with ``projection="conv"``, the
student feature is mapped to the teacher's channels by a learnable 1x1 convolution per pair, created from a probe
pass of the teacher at its training size and trained with the student. Both are medseg choices: the paper's is
unknown.

The teacher is built from its stage-1 checkpoint (its own stored configuration), frozen (``requires_grad=False``,
evaluated under ``torch.no_grad``) and deliberately **not** a registered submodule of the term: it is not in the
state dict (checkpoints hold only the student and any projections), not in ``parameters()`` (so never in an
optimiser), not used at test time, and Lightning's ``train()``/``eval()`` switching reaches it only through
:meth:`ReSegTerm.train`. It runs in eval mode by default; ``teacher_bn_train=True`` reproduces the official code,
which never calls ``eval()`` on it, by putting its BatchNorm layers in training mode while the term trains (batch
statistics, running statistics keep updating; the checkpoint file is never written).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medseg.checkpoints import load_checkpoint_config, read_checkpoint
from medseg.config import resolve_path
from medseg.errors import MedsegError
from medseg.models import SegmentationModel, SegOutput, create_model
from medseg.objectives.base import ObjectiveTerm
from medseg.objectives.reconstruction import encode_label_map
from medseg.objectives.registry import TermContext, register_term
from medseg.objectives.selfreg import feature_groups

__all__ = [
    "ALIGNMENT_DIVISOR",
    "AlignmentPair",
    "FrozenTeacher",
    "ReSegTerm",
    "alignment_pairs",
    "channel_group_average",
    "load_teacher",
    "reseg",
]

ALIGNMENT_DIVISOR = 3.0
Bridge = Literal["first_decoder", "bottleneck"]
Projection = Literal["average", "conv"]
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class AlignmentPair:
    """One alignment term.

    Attributes:
        name: ``E<k>``, ``D<k>`` (k = 1 at the deepest matched resolution) or ``M``.
        student: the segmentation network's feature.
        teacher: the frozen network's feature at the same resolution.
    """

    name: str
    student: torch.Tensor
    teacher: torch.Tensor


def _by_resolution(features: Sequence[torch.Tensor], deep_first: bool) -> dict[tuple[int, int], torch.Tensor]:
    """Map ``(H, W)`` to the deepest feature of that size; ``deep_first`` tells the order of ``features``."""
    ordered = features if deep_first else list(reversed(features))
    table: dict[tuple[int, int], torch.Tensor] = {}
    for feature in ordered:
        table.setdefault((feature.shape[-2], feature.shape[-1]), feature)
    return table


def _cross(
    prefix: str, student: dict[tuple[int, int], torch.Tensor], teacher: dict[tuple[int, int], torch.Tensor]
) -> list[AlignmentPair]:
    shared = sorted(set(student) & set(teacher), key=lambda size: size[0] * size[1])
    return [AlignmentPair(f"{prefix}{k}", student[size], teacher[size]) for k, size in enumerate(shared, start=1)]


def alignment_pairs(student: SegOutput, teacher: SegOutput, bridge: Bridge = "first_decoder") -> list[AlignmentPair]:
    """Match the student's and the teacher's features by resolution (encoder <-> decoder both ways, plus the bridge).

    Args:
        student: the segmentation network's output.
        teacher: the frozen network's output.
        bridge: ``first_decoder`` (``decoder[0]`` of both) or ``bottleneck``.

    Returns:
        The ``E`` pairs (deep to shallow), the ``D`` pairs, then ``M``.

    Raises:
        ValueError: a model lacks the bridge feature.
    """
    student_encoder, student_decoder = feature_groups(student)
    teacher_encoder, teacher_decoder = feature_groups(teacher)
    pairs = _cross("E", _by_resolution(student_encoder, False), _by_resolution(teacher_decoder, True))
    pairs += _cross("D", _by_resolution(student_decoder, True), _by_resolution(teacher_encoder, False))
    if bridge == "bottleneck":
        if student.bottleneck is None or teacher.bottleneck is None:
            raise ValueError("ReSeg bridge 'bottleneck' needs models that expose a bottleneck feature")
        pairs.append(AlignmentPair("M", student.bottleneck, teacher.bottleneck))
    else:
        if not student.decoder or not teacher.decoder:
            raise ValueError("ReSeg bridge 'first_decoder' needs models that expose decoder features")
        pairs.append(AlignmentPair("M", student.decoder[0], teacher.decoder[0]))
    return pairs


def channel_group_average(feature: torch.Tensor, channels: int) -> torch.Tensor:
    """Reduce ``(B, C, H, W)`` to ``channels`` channels by averaging groups of consecutive channels.

    Args:
        feature: the wider feature.
        channels: the target channel count (at most ``C``); ``C / channels`` consecutive channels are averaged
            when divisible, adaptive-average-pooling windows over the channel axis otherwise.

    Returns:
        ``(B, channels, H, W)``.
    """
    if feature.shape[1] == channels:
        return feature
    height, width = feature.shape[-2:]
    return F.adaptive_avg_pool3d(feature.unsqueeze(1), (channels, height, width)).squeeze(1)


class FrozenTeacher:
    """The stage-1 network, frozen, fed label maps encoded as in stage 1.

    A plain object rather than an ``nn.Module`` on purpose, so that a term holding it does not register it (see the
    module docstring).

    Args:
        model: the trained stage-1 network; its parameters are frozen here.
        bn_train: put its BatchNorm layers in training mode while the owner trains (the official behaviour).
    """

    def __init__(self, model: SegmentationModel, bn_train: bool = False) -> None:
        self.model = model.requires_grad_(False)
        self.bn_train = bn_train
        self.set_mode(True)

    def set_mode(self, training: bool) -> None:
        """Eval mode, except BatchNorm in training mode when ``bn_train`` and ``training``.

        Args:
            training: whether the owning term is in training mode.
        """
        self.model.eval()
        if self.bn_train and training:
            for module in self.model.modules():
                if isinstance(module, _BATCH_NORMS):
                    module.train()

    def __call__(self, mask: torch.Tensor) -> SegOutput:
        """Run the teacher on a label map.

        Args:
            mask: ``(B, H, W)`` class indices; the teacher is moved to their device when needed.

        Returns:
            The teacher's output (no gradient).
        """
        parameter = next(self.model.parameters(), None)
        if parameter is not None and parameter.device != mask.device:
            self.model.to(mask.device)
        with torch.no_grad():
            return self.model.forward_features(encode_label_map(mask, self.model.in_channels))


def load_teacher(path: str | Path) -> tuple[SegmentationModel, int]:
    """Build a stage-1 network from its medseg checkpoint.

    Args:
        path: a ``.ckpt`` written by a ``train.task: reconstruction`` run.

    Returns:
        The network with its weights (strictly loaded) and its training image size.

    Raises:
        MedsegError: unreadable checkpoint, or one not trained with ``train.task: reconstruction``.
    """
    payload = read_checkpoint(path)
    config = load_checkpoint_config(payload, path)
    if config.train.task != "reconstruction":
        raise MedsegError(
            f"ReSeg teacher {path} was trained with train.task={config.train.task}; it must be a stage-1 "
            "(train.task: reconstruction) checkpoint"
        )
    with torch.random.fork_rng(devices=[]):  # the random initialisation is overwritten: leave the run's RNG alone
        model = create_model(
            config.model.name,
            in_channels=config.data.in_channels,
            num_classes=config.out_channels,
            **config.model.params,
        )
    state = {k.removeprefix("model."): v for k, v in payload["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model, config.data.image_size


class ReSegTerm(ObjectiveTerm):
    """The ReSeg alignment loss ``(Σ E_k + Σ D_k + M) / 3`` against a frozen teacher.

    Args:
        teacher: the stage-1 network (frozen here).
        bridge: ``first_decoder`` (official U-Net) or ``bottleneck``.
        teacher_bn_train: teacher BatchNorm in training mode while training (official); eval mode otherwise.
        projection: ``average`` (parameter-free channel-group average of the wider feature) or ``conv`` (learnable
            1x1 convolution from the student's to the teacher's channels) where the channel counts of a pair differ.
        probe_size: input side of the probe pass that sizes the ``conv`` projections (the teacher's training size).
    """

    def __init__(
        self,
        teacher: SegmentationModel,
        bridge: Bridge = "first_decoder",
        teacher_bn_train: bool = False,
        projection: Projection = "average",
        probe_size: int = 64,
    ) -> None:
        super().__init__()
        if bridge not in ("first_decoder", "bottleneck"):
            raise MedsegError(f"reseg: bridge must be 'first_decoder' or 'bottleneck', got {bridge!r}")
        if projection not in ("average", "conv"):
            raise MedsegError(f"reseg: projection must be 'average' or 'conv', got {projection!r}")
        self.bridge = bridge
        self.projection = projection
        self.projections = nn.ModuleDict()
        if projection == "conv":
            size = -(-probe_size // teacher.output_stride) * teacher.output_stride
            teacher.eval()
            with torch.no_grad():
                probe = teacher.forward_features(torch.zeros(1, teacher.in_channels, size, size))
            for pair in alignment_pairs(probe, probe, bridge):
                if pair.student.shape[1] != pair.teacher.shape[1]:
                    self.projections[pair.name] = nn.Conv2d(pair.student.shape[1], pair.teacher.shape[1], 1)
        self.teacher = FrozenTeacher(teacher, teacher_bn_train)

    def train(self, mode: bool = True) -> ReSegTerm:
        """Set training mode, and the teacher's mode with it (see :meth:`FrozenTeacher.set_mode`)."""
        super().train(mode)
        self.teacher.set_mode(mode)
        return self

    def _matched(self, pair: AlignmentPair) -> tuple[torch.Tensor, torch.Tensor]:
        student, teacher = pair.student, pair.teacher
        if student.shape[1] == teacher.shape[1]:
            return student, teacher
        if self.projection == "conv":
            if pair.name not in self.projections:
                raise ValueError(
                    f"ReSeg pair {pair.name} has {student.shape[1]} student and {teacher.shape[1]} teacher channels "
                    "but no learnable projection was built for it (is the student a different architecture?)"
                )
            return self.projections[pair.name](student), teacher
        narrow = min(student.shape[1], teacher.shape[1])
        return channel_group_average(student, narrow), channel_group_average(teacher, narrow)

    def pairs(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> list[AlignmentPair]:
        """Run the teacher on the batch's label maps and match its features with the student's.

        Args:
            output: the student's output.
            batch: the batch, with ``mask`` ``(B, H, W)``.

        Returns:
            The alignment pairs (see :func:`alignment_pairs`).
        """
        return alignment_pairs(output, self.teacher(batch["mask"]), self.bridge)

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Compute the alignment loss (unweighted: λ is the term's weight in ``loss.terms``).

        Args:
            output: the student's output.
            batch: the batch, with ``mask``.

        Returns:
            Scalar loss.
        """
        total = output.logits.new_zeros((), dtype=torch.float32)
        for pair in self.pairs(output, batch):
            student, teacher = self._matched(pair)
            total = total + F.mse_loss(student.float(), teacher.float())
        return total / ALIGNMENT_DIVISOR


@register_term("reseg")
def reseg(
    context: TermContext,
    teacher_checkpoint: str | None = None,
    bridge: Bridge = "first_decoder",
    teacher_bn_train: bool = False,
    projection: Projection = "average",
) -> ReSegTerm:
    """Build the ReSeg alignment term (``loss.terms[].name: reseg``, weight λ = 0.035 in the recipes).

    Args:
        context: the run's context; its ``teacher_checkpoint`` (``loss.teacher_checkpoint``, which a stage's
            ``teacher_from`` sets) is the teacher unless the term names its own (the teacher brings its own
            configuration).
        teacher_checkpoint: the stage-1 checkpoint, instead of ``loss.teacher_checkpoint``.
        bridge: ``first_decoder`` (the official U-Net's ``up1``; the default, for every backbone) or
            ``bottleneck`` (set it for transformer backbones).
        teacher_bn_train: see :class:`ReSegTerm`.
        projection: see :class:`ReSegTerm`.

    Returns:
        The term.

    Raises:
        MedsegError: no or unusable teacher checkpoint.
    """
    checkpoint = teacher_checkpoint or context.teacher_checkpoint
    if checkpoint is None:
        raise MedsegError(
            "reseg needs a teacher: set loss.teacher_checkpoint to a stage-1 (train.task: reconstruction) "
            "checkpoint; in a staged recipe set `teacher_from: <stage>` on the stage that uses the term"
        )
    teacher, size = load_teacher(resolve_path(checkpoint))
    return ReSegTerm(teacher, bridge, teacher_bn_train, projection, probe_size=size)
