from __future__ import annotations

import pytest
import torch

from medseg.models import UNet, create_model
from tests.models.contract import ModelContract


class TestUNet(ModelContract):
    model_name = "unet"
    small_kwargs = {"base_channels": 8}
    reference_configs = [
        ({"in_channels": 3, "num_classes": 9}, 31.04e6),
        ({"in_channels": 1, "num_classes": 9, "bilinear": True}, 17.26e6),
    ]


class TestUNetBilinear(TestUNet):
    small_kwargs = {"base_channels": 8, "bilinear": True}


def test_feature_widths_follow_base_channels() -> None:
    model = UNet(in_channels=1, num_classes=3, base_channels=4).eval()
    with torch.no_grad():
        out = model.forward_features(torch.zeros(1, 1, 32, 32))
    assert [f.shape[1] for f in out.encoder] == [4, 8, 16, 32]
    assert out.bottleneck.shape[1:] == (64, 2, 2)
    assert [f.shape[1] for f in out.decoder] == [32, 16, 8, 4]


def test_unknown_argument_is_named() -> None:
    with pytest.raises(TypeError, match=r"base_width.*valid arguments: in_channels"):
        create_model("unet", base_width=3)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(KeyError, match=r"unknown model 'unett'.*unet"):
        create_model("unett")
