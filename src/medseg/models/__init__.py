"""Segmentation architectures, the model registry and the feature contract.

Importing this package registers the built-in models; external packages register theirs through the
``medseg.models`` entry-point group.
"""

from medseg.models import unet  # registers "unet"
from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from medseg.models.unet import UNet

__all__ = [
    "ModelInfo",
    "SegOutput",
    "SegmentationModel",
    "UNet",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "unet",
]
