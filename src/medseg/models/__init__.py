"""Segmentation architectures, the model registry and the feature contract.

Importing this package registers the built-in models; external packages register theirs through the
``medseg.models`` entry-point group.
"""

from medseg.models import unet  # registers "unet"
from medseg.models.attention_unet import AttentionUNet
from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from medseg.models.resunetpp import ResUNetPlusPlus
from medseg.models.uctransnet_unet import UCTransNetUNet
from medseg.models.unet import UNet
from medseg.models.unetpp import UNetPlusPlus
from medseg.models.utanet import UTANet

__all__ = [
    "AttentionUNet",
    "ModelInfo",
    "ResUNetPlusPlus",
    "SegOutput",
    "SegmentationModel",
    "UCTransNetUNet",
    "UNet",
    "UNetPlusPlus",
    "UTANet",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "unet",
]
