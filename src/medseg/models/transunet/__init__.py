"""TransUNet, R50-ViT-B/16 hybrid: the model and its official-weight loader (docs/methods/transunet.md)."""

from medseg.models.transunet.model import (
    PreActBottleneck,
    ResNetV2,
    StdConv2d,
    TransUNet,
    load_transunet_pretrained,
    resize_position_embeddings,
)

__all__ = [
    "PreActBottleneck",
    "ResNetV2",
    "StdConv2d",
    "TransUNet",
    "load_transunet_pretrained",
    "resize_position_embeddings",
]
