"""Encoders with torchvision-compatible parameter names, loadable from local weight files."""

from medseg.models.encoders.resnet import (
    BasicBlock,
    EncoderWeightsError,
    ResNet,
    load_torchvision_resnet_weights,
    resnet34,
)

__all__ = ["BasicBlock", "EncoderWeightsError", "ResNet", "load_torchvision_resnet_weights", "resnet34"]
