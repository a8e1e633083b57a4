"""Swin-UNet (Cao et al., "Swin-Unet: Unet-like Pure Transformer for Medical Image Segmentation", ECCV-W 2022,
arXiv 2105.05537), docs/methods/swin_unet.md.

Official code: HuCaoFighting/Swin-Unet (``networks/swin_transformer_unet_skip_expand_decoder_sys.py``,
``networks/vision_transformer.py``). :mod:`.blocks` holds window attention, the Swin block and a stage,
:mod:`.model` the U-shaped :class:`SwinUNet` (registered as ``swin_unet``) and :mod:`.weights` the Swin-T ImageNet
checkpoint loader.
"""

from medseg.models.swin_unet.blocks import Mlp, SwinTransformerBlock, WindowAttention
from medseg.models.swin_unet.model import SwinUNet
from medseg.models.swin_unet.weights import load_swin_pretrained

__all__ = ["Mlp", "SwinTransformerBlock", "SwinUNet", "WindowAttention", "load_swin_pretrained"]
