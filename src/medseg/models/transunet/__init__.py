"""TransUNet, R50-ViT-B/16 hybrid (Chen et al., "TransUNet: Transformers Make Strong Encoders for Medical Image
Segmentation", arXiv 2102.04306, 2021), docs/methods/transunet.md.

Official code: Beckschen/TransUNet (``networks/vit_seg_modeling.py``, ``vit_seg_modeling_resnet_skip.py``,
``vit_seg_configs.py``). One module per part of the figure: :mod:`.resnet_v2` (the hybrid stem), :mod:`.vit` (token
embeddings and ViT encoder), :mod:`.decoder` (the cascaded up-sampler), :mod:`.model` (:class:`TransUNet`, registered
as ``transunet``) and :mod:`.weights` (the official ``R50+ViT-B_16.npz`` loader).
"""

from medseg.models.transunet.model import TransUNet
from medseg.models.transunet.resnet_v2 import PreActBottleneck, ResNetV2, StdConv2d
from medseg.models.transunet.vit import resize_position_embeddings
from medseg.models.transunet.weights import load_transunet_pretrained

__all__ = [
    "PreActBottleneck",
    "ResNetV2",
    "StdConv2d",
    "TransUNet",
    "load_transunet_pretrained",
    "resize_position_embeddings",
]
