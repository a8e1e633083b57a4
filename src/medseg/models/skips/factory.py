"""Choose a model's skip connections by name (``model.params.skip`` in a config)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medseg.models.skips.tamosc import TaMoSC

__all__ = ["SKIP_KINDS", "IdentitySkips", "SkipConnections", "build_skips"]

SKIP_KINDS = ("identity", "tamosc")


class IdentitySkips(nn.Module):
    """Plain skips: the encoder features go to the decoder unchanged."""

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        return list(features), None


class SkipConnections(nn.Module):
    """Wraps a skip module so models share one call: new skips plus the auxiliary losses to report.

    Args:
        module: :class:`IdentitySkips` or :class:`~medseg.models.skips.tamosc.TaMoSC`.
        loss_name: key of the module's loss in ``SegOutput.aux_losses``.
    """

    def __init__(self, module: nn.Module, loss_name: str) -> None:
        super().__init__()
        self.module = module
        self.loss_name = loss_name

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Transform the skip features.

        Args:
            features: the encoder skip features, shallow to deep.

        Returns:
            The new skips (same shapes) and ``{loss_name: loss}`` in training mode when the module has a loss.
        """
        skips, loss = self.module(features)
        return skips, ({self.loss_name: loss} if loss is not None and self.training else {})


def build_skips(kind: str, channels: Sequence[int], params: dict[str, Any] | None = None) -> SkipConnections:
    """Build the skip connections of a model.

    Args:
        kind: ``identity`` (plain concatenation skips) or ``tamosc`` (UTANet's mixture of skip experts).
        channels: channels of the skip features, shallow to deep.
        params: keyword arguments of the skip module (e.g. ``num_experts``, ``top_k``, ``balance_weight``).

    Returns:
        The skip module.

    Raises:
        ValueError: unknown kind, or parameters for the identity skips.
    """
    params = dict(params or {})
    if kind == "identity":
        if params:
            raise ValueError(f"identity skips take no parameters, got {sorted(params)}")
        return SkipConnections(IdentitySkips(), "")
    if kind == "tamosc":
        return SkipConnections(TaMoSC(list(channels), **params), "tamosc_balance")
    raise ValueError(f"unknown skip kind {kind!r}; valid: {', '.join(SKIP_KINDS)}")
