"""TA-MoSC: Task-Adaptive Mixture of Skip Connections, from UTANet (Luo et al., AAAI 2025).

Official code: AshleyLuo001/UTANet (``utanet/ta_mosc.py`` and the fusion/"docker" layers in ``utanet/UTANet.py``).
The module replaces N encoder skips by N mixtures of shared experts:

1. fusion: every skip feature is resized (bilinear, ``align_corners=False``) to the resolution of a reference
   feature, the maps are concatenated and a Conv1x1 + BN + ReLU reduces them to ``fuse_channels`` (64 in UTANet);
2. one router per output skip picks, per image, the top-k of ``num_experts`` shared experts from the global
   average of the fused map; the mixing weights are a softmax over the top-k router *probabilities*, exactly as the
   official code computes them (not a renormalisation, so for k=2 they stay within [0.27, 0.73]);
3. one "docker" (Conv1x1 + BN + ReLU) per output maps the mixture to the skip's width, and a bilinear resize brings
   it back to the skip's resolution.

The Balanced Expert Utilisation (BEU) loss is the sum over routers of the squared coefficient of variation of the
batch-summed router probabilities. The weight it is scaled by (default 0.01) is an assumption: the official
repository has no training code; 0.01 is the coefficient of the sparsely-gated MoE reference the CV^2 code follows.

Expert dispatch is batched per expert: the (image, expert) pairs a router selects are grouped by expert, every
expert runs once on all its rows, and the outputs are gathered back and mixed. In evaluation mode, when experts are
pure per-image functions, each (image, expert) pair is computed once and shared by every router that selected it.
In training mode the experts run once per router, as in the official code, so that BatchNorm sees the same batches.
While the model is traced for export (``torch.jit.trace``, the ONNX exporter) in evaluation mode, the dispatch has
no data-dependent sizes: every expert runs on every image and each router gathers its k selected outputs per image
(:meth:`TaMoSC._mix_dense`); the mixtures are the same up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.skips.factory import register_skip

__all__ = ["BALANCE_LOSS", "Expert", "Routing", "TaMoSC", "UnusedExpertPolicy", "balance_loss"]

BALANCE_LOSS = "tamosc_balance"
"""Key of the weighted BEU loss in ``SegOutput.aux_losses``."""

UnusedExpertPolicy = Literal["official", "zero_touch", "none"]
_POLICIES = ("official", "zero_touch", "none")


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def balance_loss(probs: torch.Tensor) -> torch.Tensor:
    """Unweighted Balanced Expert Utilisation loss.

    Args:
        probs: router probabilities ``(G, B, E)`` (G routers, B images, E experts).

    Returns:
        Scalar ``sum_g Var(u_g) / (Mean(u_g)^2 + 1e-10)`` with ``u_g = sum_b probs[g, b]`` and the unbiased variance
        over the E experts, computed in float32; zero when there is a single expert.
    """
    if probs.shape[-1] == 1:
        return probs.new_zeros((), dtype=torch.float32)
    usage = probs.float().sum(dim=1)
    return (usage.var(dim=1) / (usage.mean(dim=1).square() + 1e-10)).sum()


@dataclass
class Routing:
    """The routers' decisions for one batch.

    Attributes:
        probs: softmax router probabilities ``(G, B, E)``.
        indices: selected experts ``(G, B, k)``, in decreasing probability.
        weights: mixing weights ``(G, B, k)``, the softmax over the k selected probabilities.
    """

    probs: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


class Expert(nn.Sequential):
    """One shared expert: Conv1x1 C->rC, Conv1x1 rC->rC, BN, ReLU, Conv1x1 rC->C (all with bias).

    There is no activation between the first two convolutions, as in the official code.

    Args:
        channels: input and output channels C.
        hidden_rate: hidden width multiplier r.
    """

    def __init__(self, channels: int, hidden_rate: int = 2) -> None:
        hidden = channels * hidden_rate
        super().__init__(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.Conv2d(hidden, hidden, kernel_size=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )


@register_skip("tamosc", loss_name=BALANCE_LOSS)
class TaMoSC(nn.Module):
    """Task-Adaptive Mixture of Skip Connections for any list of encoder features.

    Args:
        in_channels: channels of the N skip features, shallow to deep (UTANet: ``[64, 64, 128, 256]``).
        out_channels: channels of the N new skips; defaults to ``in_channels``.
        fuse_channels: width C of the fused map and of the experts (64 in UTANet).
        num_experts: number E of shared experts.
        top_k: experts mixed per image and router.
        hidden_rate: expert hidden width multiplier.
        reference_index: index of the feature whose resolution the fusion and the experts work at (UTANet: 1).
        balance_weight: factor applied to the returned BEU loss (0.01 is an assumption, see the module docstring).
        unused_expert_policy: what happens in training to an expert no image selected for a router. ``"official"``
            runs it on one random row r in [0, B) of the (B*k)-row expanded batch (row r is slot ``r % k`` of image
            ``r // k``) and adds its output to that row before weighting, as the official code does, so every expert
            gets a gradient but one image's skip is perturbed in training only. ``"zero_touch"`` does the same with
            the output multiplied by 0 (gradients exist, outputs are untouched). ``"none"`` skips such experts.
        generator: random generator of the row drawn by the ``"official"``/``"zero_touch"`` policies; the global
            generator (``torch.manual_seed``) when ``None``.

    Example:
        >>> skips = TaMoSC([8, 16, 32], fuse_channels=16, num_experts=3)
        >>> features = [torch.randn(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32])]
        >>> new_skips, loss = skips(features)
        >>> [tuple(s.shape) for s in new_skips]
        [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int] | None = None,
        fuse_channels: int = 64,
        num_experts: int = 4,
        top_k: int = 2,
        hidden_rate: int = 2,
        reference_index: int = 1,
        balance_weight: float = 0.01,
        unused_expert_policy: UnusedExpertPolicy = "official",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        out_channels = list(out_channels) if out_channels is not None else in_channels
        if len(out_channels) != len(in_channels):
            raise ValueError(f"got {len(in_channels)} input and {len(out_channels)} output skips")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k}")
        if not 0 <= reference_index < len(in_channels):
            raise ValueError(f"reference_index {reference_index} out of range for {len(in_channels)} features")
        if unused_expert_policy not in _POLICIES:
            raise ValueError(f"unused_expert_policy must be one of {_POLICIES}, got {unused_expert_policy!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_experts = num_experts
        self.top_k = top_k
        self.reference_index = reference_index
        self.balance_weight = balance_weight
        self.unused_expert_policy = unused_expert_policy
        self.generator = generator
        self.fuse = _conv_bn_relu(sum(in_channels), fuse_channels)
        self.experts = nn.ModuleList(Expert(fuse_channels, hidden_rate) for _ in range(num_experts))
        self.routers = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(fuse_channels, num_experts))) for _ in out_channels
        )
        self.dockers = nn.ModuleList(_conv_bn_relu(fuse_channels, c) for c in out_channels)

    def fuse_features(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Resize the skip features to the reference resolution, concatenate them and reduce to ``fuse_channels``.

        Args:
            features: the N skip features ``(B, in_channels[i], H_i, W_i)``.

        Returns:
            The fused map ``(B, fuse_channels, H_ref, W_ref)``.
        """
        if len(features) != len(self.in_channels):
            raise ValueError(f"TaMoSC expects {len(self.in_channels)} features, got {len(features)}")
        channels = [f.shape[1] for f in features]
        if channels != self.in_channels:
            raise ValueError(f"TaMoSC expects feature channels {self.in_channels}, got {channels}")
        size = features[self.reference_index].shape[-2:]
        return self.fuse(torch.cat([_resize(f, size) for f in features], dim=1))

    def route(self, fused: torch.Tensor) -> Routing:
        """Choose the experts of every image for every router (one decision per image, from the fused map's mean).

        Args:
            fused: fused map ``(B, C, H, W)``.

        Returns:
            The :class:`Routing`, computed in float32.
        """
        pooled = fused.float().mean(dim=(2, 3))
        routers = torch.stack(list(self.routers)).float()
        probs = torch.einsum("bc,gce->gbe", pooled, routers).softmax(dim=-1)
        top_probs, indices = probs.topk(self.top_k, dim=-1)
        return Routing(probs=probs, indices=indices, weights=top_probs.softmax(dim=-1))

    def _run_experts(
        self, fused: torch.Tensor, samples: torch.Tensor, experts: torch.Tensor, counts: list[int]
    ) -> torch.Tensor:
        """Return ``expert[experts[r]](fused[samples[r]])`` for every row r, one batched call per expert.

        Rows are sorted by expert (stably), each expert runs once on its contiguous block of images, and the results
        are put back in row order. ``counts[e]`` is the number of rows of expert e.
        """
        order = torch.argsort(experts, stable=True)
        blocks = samples[order].split(counts)
        outputs = [self.experts[e](fused[block]) for e, block in enumerate(blocks) if counts[e]]
        return torch.cat(outputs)[torch.argsort(order)]

    def _touch_unused(self, fused: torch.Tensor, rows: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Apply the training-only unused-expert policy to the (B*k)-row expert outputs of one router."""
        unused = [e for e, count in enumerate(counts) if count == 0]
        if not unused or self.unused_expert_policy == "none":
            return rows
        device = self.generator.device if self.generator is not None else "cpu"
        picks = torch.randint(0, fused.shape[0], (len(unused),), generator=self.generator, device=device).tolist()
        scale = 1.0 if self.unused_expert_policy == "official" else 0.0
        for expert, row in zip(unused, picks, strict=True):
            image = row // self.top_k
            extra = self.experts[expert](fused[image : image + 1]) * scale
            rows = rows.index_add(0, torch.tensor([row], device=rows.device), extra)
        return rows

    def mix(self, fused: torch.Tensor, routing: Routing) -> list[torch.Tensor]:
        """Mix the selected experts' outputs for every router.

        Args:
            fused: fused map ``(B, C, H, W)``.
            routing: the routers' decisions for this batch.

        Returns:
            One ``(B, C, H, W)`` mixture per router: ``sum_j weights[g, b, j] * Expert_{indices[g, b, j]}(fused[b])``
            (plus, in training, the unused-expert policy's contribution).
        """
        num_routers, batch, k = routing.indices.shape
        samples = torch.arange(batch, device=fused.device).repeat_interleave(k)
        slot_weights = routing.weights.to(fused.dtype)
        mixtures = []
        if self.training:
            flat = routing.indices.reshape(num_routers, batch * k)
            offsets = torch.arange(num_routers, device=flat.device)[:, None] * self.num_experts
            all_counts = torch.bincount((flat + offsets).flatten(), minlength=num_routers * self.num_experts)
            all_counts = all_counts.view(num_routers, self.num_experts).tolist()
            for g in range(num_routers):
                rows = self._run_experts(fused, samples, flat[g], all_counts[g])
                rows = self._touch_unused(fused, rows, all_counts[g])
                mixtures.append(self._combine(rows, slot_weights[g]))
            return mixtures
        if torch.jit.is_tracing():
            return self._mix_dense(fused, routing)
        pairs = routing.indices.reshape(num_routers, batch * k) * batch + samples
        unique_pairs, inverse = torch.unique(pairs, return_inverse=True)
        experts = torch.div(unique_pairs, batch, rounding_mode="floor")
        counts = torch.bincount(experts, minlength=self.num_experts).tolist()
        computed = self._run_experts(fused, unique_pairs % batch, experts, counts)
        return [self._combine(computed[inverse[g]], slot_weights[g]) for g in range(num_routers)]

    def _mix_dense(self, fused: torch.Tensor, routing: Routing) -> list[torch.Tensor]:
        """The evaluation-mode mixtures with sizes that do not depend on the routing (for tracing).

        Every expert runs on the whole batch; each router gathers, per image, the outputs of its k experts in slot
        order and combines them as :meth:`mix` does.
        """
        outputs = torch.stack([expert(fused) for expert in self.experts], dim=1)  # (B, E, C, H, W)
        slot_weights = routing.weights.to(fused.dtype)
        mixtures = []
        for g in range(routing.indices.shape[0]):
            index = routing.indices[g][:, :, None, None, None].expand(-1, -1, *outputs.shape[2:])
            rows = outputs.gather(1, index).flatten(0, 1)  # (B*k, C, H, W), image-major as in mix
            mixtures.append(self._combine(rows, slot_weights[g]))
        return mixtures

    @staticmethod
    def _combine(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weight the (B*k) expert rows by their mixing weights ``(B, k)`` and sum the k slots of every image."""
        batch, k = weights.shape
        weighted = rows * weights.reshape(batch * k, 1, 1, 1)
        return weighted.reshape(batch, k, *rows.shape[1:]).sum(dim=1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Replace the skip features by their TA-MoSC mixtures.

        Args:
            features: the N skip features, shallow to deep, ``(B, in_channels[i], H_i, W_i)``.

        Returns:
            The N new skips ``(B, out_channels[i], H_i, W_i)`` and the BEU loss multiplied by ``balance_weight``.
        """
        fused = self.fuse_features(features)
        routing = self.route(fused)
        mixtures = self.mix(fused, routing)
        skips = [
            _resize(docker(mixture), feature.shape[-2:])
            for docker, mixture, feature in zip(self.dockers, mixtures, features, strict=True)
        ]
        return skips, self.balance_weight * balance_loss(routing.probs)
