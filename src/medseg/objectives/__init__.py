"""Training objectives over :class:`~medseg.models.SegOutput`: the supervised loss plus registered terms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.objectives import deep_supervision, reseg, selfreg  # noqa: F401  (register their terms)
from medseg.objectives.base import Objective, ObjectiveTerm, SegmentationTerm
from medseg.objectives.registry import TermContext, build_term, list_terms, register_term
from medseg.objectives.supervised import DiceCELoss, soft_dice_loss

if TYPE_CHECKING:
    from medseg.config import ExperimentConfig

__all__ = [
    "DiceCELoss",
    "Objective",
    "ObjectiveTerm",
    "SegmentationTerm",
    "TermContext",
    "build_objective",
    "build_term",
    "list_terms",
    "register_term",
    "soft_dice_loss",
]


def build_objective(config: ExperimentConfig) -> Objective:
    """Build a run's objective: the supervised Dice + CE term ``seg`` plus every term of ``loss.terms``.

    Model auxiliary losses are always added by :class:`Objective`.

    Args:
        config: the experiment.

    Returns:
        The objective.
    """
    loss = config.loss
    seg_loss = DiceCELoss(config.binary, loss.dice_weight, loss.ce_weight, loss.include_background)
    context = TermContext(config.binary, seg_loss, config.train.seed, config.data.num_classes, loss.teacher_checkpoint)
    terms = {"seg": (1.0, SegmentationTerm(seg_loss))}
    for term in loss.terms:
        terms[term.name] = (term.weight, build_term(term.name, context, term.params))
    return Objective(terms)
