"""Swin-UNet: the model and its Swin-T weight loader (docs/methods/swin_unet.md)."""

from medseg.models.swin_unet.model import (
    Mlp,
    SwinTransformerBlock,
    SwinUNet,
    WindowAttention,
    load_swin_pretrained,
)

__all__ = ["Mlp", "SwinTransformerBlock", "SwinUNet", "WindowAttention", "load_swin_pretrained"]
