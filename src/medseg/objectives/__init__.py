"""Training objectives over :class:`~medseg.models.SegOutput`."""

from medseg.objectives.base import Objective, ObjectiveTerm, SegmentationTerm
from medseg.objectives.supervised import DiceCELoss, soft_dice_loss

__all__ = [
    "DiceCELoss",
    "Objective",
    "ObjectiveTerm",
    "SegmentationTerm",
    "build_objective",
    "soft_dice_loss",
]


def build_objective(
    binary: bool, dice_weight: float, ce_weight: float, include_background: bool
) -> Objective:
    """Build the default objective: the supervised Dice + CE term (model auxiliary losses are always added).

    Args:
        binary: single sigmoid channel (BCE) rather than softmax (CE).
        dice_weight: weight of the Dice part inside the supervised term.
        ce_weight: weight of the cross-entropy part.
        include_background: multi-class Dice includes the background class.

    Returns:
        The objective.
    """
    loss = DiceCELoss(binary, dice_weight, ce_weight, include_background)
    return Objective({"seg": (1.0, SegmentationTerm(loss))})
