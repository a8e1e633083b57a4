from __future__ import annotations

import torch

from medseg.models import UCTransNetUNet
from tests.models.contract import ModelContract


class TestUCTransNetUNet(ModelContract):
    model_name = "unet_uct"
    small_kwargs = {"base_channels": 4}
    reference_configs = [({"in_channels": 3, "num_classes": 1}, 14.7510e6)]


def test_single_conv_stem_and_widths() -> None:
    model = UCTransNetUNet(in_channels=1, num_classes=3, base_channels=4).eval()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.inc) == 1
    with torch.no_grad():
        out = model.forward_features(torch.zeros(1, 1, 32, 32))
    assert [f.shape[1] for f in out.encoder] == [4, 8, 16, 32]
    assert out.bottleneck.shape[1:] == (32, 2, 2)
    assert [f.shape[1] for f in out.decoder] == [16, 8, 4, 4]
