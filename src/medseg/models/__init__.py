"""Segmentation architectures, the model registry and the feature contract.

Importing this package registers the built-in models; external packages register theirs through the
``medseg.models`` entry-point group.
"""

from medseg.models import unet  # registers "unet"
from medseg.models.asc_seg import ASCSeg
from medseg.models.attention_unet import AttentionUNet
from medseg.models.base import SegmentationModel, SegOutput
from medseg.models.registry import ModelInfo, create_model, list_models, model_info, register_model
from medseg.models.resunetpp import ResUNetPlusPlus
from medseg.models.swin_unet import SwinUNet
from medseg.models.transunet import TransUNet
from medseg.models.uctransnet_unet import UCTransNetUNet
from medseg.models.unet import UNet
from medseg.models.unetpp import UNetPlusPlus
from medseg.models.utanet import UTANet
from medseg.models.vmunet import VMUNet

__all__ = [
    "ASCSeg",
    "AttentionUNet",
    "ModelInfo",
    "ResUNetPlusPlus",
    "SegOutput",
    "SegmentationModel",
    "SwinUNet",
    "TransUNet",
    "UCTransNetUNet",
    "UNet",
    "UNetPlusPlus",
    "UTANet",
    "VMUNet",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "unet",
]
