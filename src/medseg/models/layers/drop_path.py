"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"), per sample, as in timm's ``DropPath``.

In training, each sample's residual branch is zeroed with probability ``p`` and the kept ones are scaled by
``1 / (1 - p)``, so the expectation is unchanged; in evaluation the branch passes through.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath"]


class DropPath(nn.Module):
    """Drop a residual branch for whole samples during training.

    Args:
        p: probability of dropping the branch of a sample, in ``[0, 1)``.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply stochastic depth to a batch ``(B, ...)`` of branch outputs.

        Args:
            x: branch output, batch first.

        Returns:
            ``x`` unchanged in evaluation or with ``p = 0``; otherwise ``x`` with whole samples zeroed and the others
            scaled by ``1 / (1 - p)``.
        """
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
