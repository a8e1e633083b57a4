"""Composable training objectives: a run's loss is a list of weighted terms over a model's :class:`SegOutput`."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from medseg.models.base import SegOutput

__all__ = ["Objective", "ObjectiveTerm", "SegmentationTerm"]


class ObjectiveTerm(nn.Module):
    """One loss term. Subclasses implement ``forward(output, batch) -> scalar``."""

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Compute the term.

        Args:
            output: the model's features and logits for the batch.
            batch: the batch (``image``, ``mask`` ...).

        Returns:
            Scalar loss.
        """
        raise NotImplementedError


class SegmentationTerm(ObjectiveTerm):
    """Applies a supervised loss to the main logits against ``batch["mask"]``.

    Args:
        loss: a module mapping ``(logits, target)`` to a scalar.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, output: SegOutput, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(output.logits, batch["mask"])


class Objective(nn.Module):
    """Weighted sum of named terms plus the auxiliary losses the model reports itself.

    Model auxiliary losses (``SegOutput.aux_losses``) are added with weight 1: the model owns their weights.

    Args:
        terms: ``name -> (weight, term)``.
    """

    def __init__(self, terms: Mapping[str, tuple[float, ObjectiveTerm]]) -> None:
        super().__init__()
        self.weights = {name: weight for name, (weight, _) in terms.items()}
        self.terms = nn.ModuleDict({name: term for name, (_, term) in terms.items()})

    def forward(
        self, output: SegOutput, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the total loss.

        Args:
            output: the model's output for the batch.
            batch: the batch.

        Returns:
            The total loss and each unweighted part (detached) by name, for logging.
        """
        parts: dict[str, torch.Tensor] = {}
        total = output.logits.new_zeros((), dtype=torch.float32)
        for name, term in self.terms.items():
            value = term(output, batch)
            parts[name] = value.detach()
            total = total + self.weights[name] * value
        for name, value in output.aux_losses.items():
            parts[name] = value.detach()
            total = total + value
        return total, parts
