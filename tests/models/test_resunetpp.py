from __future__ import annotations

import torch

from medseg.models import ResUNetPlusPlus
from medseg.models.layers.attention import ResUNetPPAttention
from medseg.models.layers.residual import PreActResidualSE
from medseg.models.layers.se import SqueezeExcitation
from tests.models.contract import ModelContract

SMALL_FILTERS = (8, 8, 16, 16, 32)


class TestResUNetPlusPlus(ModelContract):
    model_name = "resunetpp"
    small_kwargs = {"filters": SMALL_FILTERS}
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, 4.063e6),
        ({"in_channels": 3, "num_classes": 1, "filters": (32, 64, 128, 256, 512)}, 16.23e6),
    ]


def test_every_residual_block_and_the_stem_end_in_squeeze_excitation() -> None:
    model = ResUNetPlusPlus(filters=SMALL_FILTERS)
    blocks = [model.stem, model.enc2, model.enc3, model.enc4, model.dec1.block, model.dec2.block, model.dec3.block]
    assert all(isinstance(block.se, SqueezeExcitation) for block in blocks)
    assert sum(isinstance(m, PreActResidualSE) for m in model.modules()) == 6
    assert sum(isinstance(m, SqueezeExcitation) for m in model.modules()) == 7
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.bias is None for m in linears)


def test_attention_has_no_sigmoid_and_is_unbounded() -> None:
    torch.manual_seed(0)
    attention = ResUNetPPAttention(encoder_channels=4, decoder_channels=8).eval()
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in attention.modules())
    decoder = torch.ones(1, 8, 4, 4)
    with torch.no_grad():
        out = attention(torch.randn(1, 4, 8, 8) * 10, decoder)
    assert out.shape == decoder.shape
    assert (out.abs() > 1).any() or (out < 0).any()


def test_feature_widths_follow_filters() -> None:
    model = ResUNetPlusPlus(filters=SMALL_FILTERS).eval()
    with torch.no_grad():
        out = model.forward_features(torch.zeros(1, 3, 32, 32))
    assert [f.shape[1] for f in out.encoder] == [8, 8, 16, 16]
    assert out.bottleneck.shape[1:] == (32, 4, 4)
    assert [f.shape[1:] for f in out.decoder] == [(16, 8, 8), (16, 16, 16), (8, 32, 32)]


class TestResUNetPPTaMoSC(TestResUNetPlusPlus):
    small_kwargs = {**TestResUNetPlusPlus.small_kwargs, "skip": "tamosc", "skip_params": {"fuse_channels": 8}}
    reference_configs = []
