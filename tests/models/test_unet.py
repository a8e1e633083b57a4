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


class TestUNetTaMoSC(TestUNet):
    small_kwargs = {"base_channels": 8, "skip": "tamosc", "skip_params": {"fuse_channels": 8, "num_experts": 3}}
    reference_configs = []

    def test_balance_loss_only_in_training(self) -> None:
        model = self.build()
        x = torch.randn(2, 3, 32, 32)
        loss = model.train().forward_features(x).aux_losses["tamosc_balance"]
        assert loss.ndim == 0 and loss.item() >= 0
        assert model.eval().forward_features(x).aux_losses == {}


def test_unknown_skip_kind_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown skip kind 'moe'; valid: identity, tamosc"):
        create_model("unet", skip="moe")
