"""TransUNet's per-volume protocol for Synapse and ACDC (also used by SelfReg-UNet, ReSeg-UNet and VM-UNet)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medseg.config import DataConfig
from medseg.errors import MedsegError
from medseg.inference import Predictor
from medseg.metrics import ASSD_DEFINITIONS, AssdDefinition, mean_over_classes
from medseg.metrics.scoring import ScoreTask, compact_labels, score_transunet
from medseg.protocols.base import CaseResult, Protocol, ProtocolContext, prepared
from medseg.protocols.registry import register_protocol

__all__ = [
    "TransUNetACDCCleanProtocol",
    "TransUNetACDCProtocol",
    "TransUNetCleanProtocol",
    "TransUNetProtocol",
    "TransUNetSynapseCleanProtocol",
    "TransUNetSynapseProtocol",
    "TransUNetVolumeCleanProtocol",
    "TransUNetVolumeProtocol",
]

FAITHFUL_AGGREGATION = (
    "per volume: mean over the foreground classes; metrics: mean over volumes of those per-volume means, equal to "
    "the mean over classes of the per-class means over volumes (per_class), since no value is undefined under "
    "these conventions"
)
CLEAN_AGGREGATION = (
    "per volume: mean over the foreground classes where the value is defined (a class absent from both masks, and "
    "HD95/ASSD with one mask empty, are undefined); metrics: mean over the volumes where that per-volume mean is "
    "defined (the others counted in n_undefined); per_class: each class's mean over the volumes where it is "
    "defined; mean_over_classes: the mean of those per-class means, the other order, which differs from metrics "
    "when values are undefined"
)


class TransUNetProtocol(Protocol):
    """Per-volume 3D Dice and HD95 per class exactly as TransUNet computes them.

    Slices are resized to the input size with order 3 and the predicted label maps back with order 0. For each
    foreground class: both masks non-empty -> medpy Dice/HD95 in voxels (no spacing); prediction non-empty and
    ground truth empty -> (Dice 1, HD95 0); prediction empty -> (0, 0). Per-class values are averaged over
    volumes and the reported mean is the mean over classes (equal to the mean over all volume-class pairs).
    Jaccard and ASSD are reported with the same conventions (SelfReg-UNet's ACDC script), ASSD as medpy 0.4.0
    computed it (mean of the two directed average surface distances). The summary states the distance unit,
    the ASSD definition and the aggregation.
    """

    volumetric = True
    metrics = ("dice", "hd95", "jaccard", "assd")
    expected_classes: int | None = None
    assd_definition: AssdDefinition = "mean_of_directed"
    aggregation: str = FAITHFUL_AGGREGATION
    clean: bool = False

    def __init__(self, context: ProtocolContext) -> None:
        if self.expected_classes is not None and context.num_classes != self.expected_classes:
            raise MedsegError(
                f"protocol {self.name} expects {self.expected_classes} classes, the run has {context.num_classes}"
            )
        super().__init__(context)

    def prepare(self, data: DataConfig, case: Any) -> np.ndarray:
        """The slices as TransUNet's ``test_single_volume`` feeds them: each zoomed to the input size with cubic
        splines (``scipy.ndimage.zoom`` order 3), then prepared as in training.

        Args:
            data: the data settings the model was trained with.
            case: the loaded volume, ``(D, H, W)`` or ``(D, H, W, C)``.

        Returns:
            ``(D, in_channels, S, S)`` float32.
        """
        image = case.image
        size = self.context.image_size
        zoom_in = (size / image.shape[1], size / image.shape[2]) + (1,) * (image.ndim - 3)
        slices = [ndimage.zoom(image[i].astype(np.float32), zoom_in, order=3) for i in range(image.shape[0])]
        return np.concatenate([prepared(array, data) for array in slices])

    def inputs(self, predictor: Predictor, arrays: np.ndarray) -> torch.Tensor:
        """The zoomed slices on the model's device (they are at the input size already)."""
        return torch.from_numpy(arrays).to(predictor.device)

    def labels(self, predictor: Predictor, case: Any, probs: torch.Tensor) -> np.ndarray:
        """Softmax argmax (threshold for one channel) of each slice, zoomed back to the slice size with order 0.

        Args:
            predictor: the model with its preprocessing.
            case: the loaded volume.
            probs: ``(D, K, S, S)`` probabilities of its slices.

        Returns:
            ``(D, H, W)`` int64 label volume.
        """
        depth, height, width = case.image.shape[:3]
        size = self.context.image_size
        prediction = np.zeros((depth, height, width), dtype=np.int64)
        for index, label_map in enumerate(predictor.label_map(probs).cpu().numpy()):
            prediction[index] = ndimage.zoom(label_map, (height / size, width / size), order=0)
        return prediction

    def score_task(self, case: Any, prediction: np.ndarray) -> ScoreTask:
        arguments = {
            "prediction": compact_labels(prediction),
            "mask": compact_labels(case.mask),
            "class_names": self.context.class_names,
            "spacing": case.spacing,
            "metrics": self.metrics,
            "clean": self.clean,
        }
        return ScoreTask(score_transunet, arguments)

    def distance_unit(self, results: list[CaseResult]) -> str:
        """The unit of HD95 and ASSD in the summary.

        Args:
            results: every evaluated volume.

        Returns:
            ``"voxels"``: the reference script passes no spacing.
        """
        del results  # always voxels
        return "voxels"

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        """Aggregate as the base protocol, stating the aggregation, the distance unit and the ASSD definition.

        Args:
            results: every evaluated volume.

        Returns:
            The base summary with ``aggregation``, ``distance_unit`` and ``assd_definition``.
        """
        summary = super().summarize(results)
        summary["aggregation"] = self.aggregation
        summary["distance_unit"] = self.distance_unit(results)
        summary["assd_definition"] = ASSD_DEFINITIONS[self.assd_definition]
        return summary


class TransUNetCleanProtocol(TransUNetProtocol):
    """Same prediction as TransUNet, but spacing-aware HD95/ASSD and undefined values reported as such.

    Both masks empty -> undefined; one mask empty -> Dice 0, HD95/ASSD undefined. Distances are in mm when the
    volume has a spacing (NIfTI headers, or a spacing table for the HDF5 layouts) and in voxels otherwise;
    ASSD is the pooled mean of both directions (medpy >= 0.5.2). The summary also gives the other aggregation
    order (``mean_over_classes``).
    """

    assd_definition: AssdDefinition = "pooled"
    aggregation: str = CLEAN_AGGREGATION
    clean = True

    def distance_unit(self, results: list[CaseResult]) -> str:
        """The unit of HD95 and ASSD: mm when every volume has a spacing, voxels when none has.

        Args:
            results: every evaluated volume.

        Returns:
            ``"mm"`` or ``"voxels"``.

        Raises:
            MedsegError: some volumes have a spacing and others not (their distances cannot be averaged).
        """
        units = sorted({str(result.info["distance_unit"]) for result in results})
        if len(units) > 1:
            without = [result.case_id for result in results if result.info["distance_unit"] == "voxels"]
            raise MedsegError(
                f"protocol {self.name}: {len(without)} volume(s) have no voxel spacing ({', '.join(without[:5])}) "
                "while the others do, so their distances in voxels and mm cannot be averaged; give every volume a "
                "spacing (see docs/protocols.md)"
            )
        return units[0] if units else "voxels"

    def summarize(self, results: list[CaseResult]) -> dict[str, Any]:
        """Aggregate as :class:`TransUNetProtocol` and add the other order, ``mean_over_classes``.

        Args:
            results: every evaluated volume.

        Returns:
            The summary with ``mean_over_classes``: metric -> mean over classes of the per-class means.
        """
        summary = super().summarize(results)
        if "per_class" in summary:
            summary["mean_over_classes"] = mean_over_classes(summary["per_class"], self.metrics)
        return summary


FAITHFUL = (
    "TransUNet per-volume protocol ({dataset}): slices zoomed (order 3) to the input size and back (order 0), "
    "medpy Dice/HD95 in voxels per class, (1, 0) for a prediction on an absent class, (0, 0) for a miss; "
    "Jaccard and ASSD alike (ASSD as medpy 0.4.0: mean of the two directed averages); "
    "mean over classes of per-class means over volumes"
)
CLEAN = (
    "TransUNet per-volume prediction ({dataset}) with HD95/ASSD in mm when volumes have a spacing (else voxels) "
    "and pooled ASSD; a class absent from both masks and one-sided HD95/ASSD are undefined; mean over volumes of "
    "each volume's mean over its defined classes"
)


@register_protocol("transunet_synapse")
class TransUNetSynapseProtocol(TransUNetProtocol):
    """TransUNet's Synapse protocol (9 classes: background and 8 organs)."""

    description = FAITHFUL.format(dataset="Synapse")
    expected_classes = 9


@register_protocol("transunet_acdc")
class TransUNetACDCProtocol(TransUNetProtocol):
    """TransUNet's protocol applied to ACDC (4 classes: background, RV, myocardium, LV)."""

    description = FAITHFUL.format(dataset="ACDC")
    expected_classes = 4


@register_protocol("transunet_volume")
class TransUNetVolumeProtocol(TransUNetProtocol):
    """TransUNet's per-volume conventions for any volumetric dataset and number of classes."""

    description = FAITHFUL.format(dataset="any classes")


@register_protocol("transunet_synapse_clean")
class TransUNetSynapseCleanProtocol(TransUNetCleanProtocol):
    """Clean variant of ``transunet_synapse``."""

    description = CLEAN.format(dataset="Synapse")
    expected_classes = 9


@register_protocol("transunet_acdc_clean")
class TransUNetACDCCleanProtocol(TransUNetCleanProtocol):
    """Clean variant of ``transunet_acdc``."""

    description = CLEAN.format(dataset="ACDC")
    expected_classes = 4


@register_protocol("transunet_volume_clean")
class TransUNetVolumeCleanProtocol(TransUNetCleanProtocol):
    """Clean variant of ``transunet_volume``."""

    description = CLEAN.format(dataset="any classes")
