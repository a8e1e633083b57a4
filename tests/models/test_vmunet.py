"""VM-UNet: contract, true and thop-style parameter counts, feature layout, patch merging/expansion, init, and the
stochastic depth of its VSS blocks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.models import VMUNet, create_model
from medseg.models.layers.drop_path import DropPath
from medseg.models.layers.tokens import PatchExpand, PatchMerging
from medseg.models.params import count_parameters, thop_style_count
from tests.models.contract import ModelContract

TINY = {"dims": (8, 16, 32, 64), "depths": (1, 1, 1, 1), "depths_decoder": (1, 1, 1, 1), "d_state": 4}
TRUE_PARAMS = 27_427_561
THOP_PARAMS = 22_037_737


class TestVMUNet(ModelContract):
    model_name = "vmunet"
    small_kwargs = TINY
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, 27.43e6),
        ({"in_channels": 3, "num_classes": 1, "depths": (2, 2, 9, 2), "depths_decoder": (2, 9, 2, 2)}, 44.27e6),
    ]


def test_exact_parameter_counts_true_and_thop_style() -> None:
    """docs/methods/vmunet.md#architecture / docs/methods/asc_seg.md#published-numbers: 27.43 M true, 22.04 M thop-style
    (the ASC-Seg table's 22.0370 M)."""
    with torch.device("meta"):
        model = create_model("vmunet", in_channels=3, num_classes=1)
    true, thop = count_parameters(model), thop_style_count(model)
    assert (true, thop) == (TRUE_PARAMS, THOP_PARAMS)
    assert abs(thop - 22.04e6) / 22.04e6 <= 1e-3
    assert abs(thop - 22.0370e6) / 22.0370e6 <= 1e-3
    assert true - thop == 5_389_824  # the SS2D raw parameters, see tests/models/layers/test_thop_counts.py


def test_thop_count_with_a_forward_pass_calls_every_counted_module() -> None:
    model = VMUNet(**TINY)
    assert thop_style_count(model, torch.randn(1, 3, 32, 32)) == thop_style_count(model)


def test_feature_layout() -> None:
    model = VMUNet(num_classes=2, **TINY).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in out.encoder] == [(8, 16, 24), (16, 8, 12), (32, 4, 6)]
    assert tuple(out.bottleneck.shape[1:]) == (64, 2, 3)
    assert [tuple(f.shape[1:]) for f in out.decoder] == [(64, 2, 3), (32, 4, 6), (16, 8, 12), (8, 16, 24)]
    assert tuple(out.final.shape[1:]) == (2, 64, 96)
    assert out.logits.shape == (1, 2, 64, 96) and out.aux_logits == []
    assert model.output_stride == 32


def test_grey_input_is_repeated_to_three_channels() -> None:
    model = VMUNet(in_channels=1, **TINY).eval()
    assert model.patch_embed.proj.in_channels == 3
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_features(x.repeat(1, 3, 1, 1)).logits)


def test_patch_merging_order_and_patch_expand_layout() -> None:
    merge = PatchMerging(1)
    x = torch.tensor([[[[0.0], [1.0]], [[2.0], [3.0]]]])  # (1, H=2, W=2, C=1): value = 2 h + w
    with torch.no_grad():
        merge.norm.weight.fill_(1)
        merge.norm.bias.zero_()
        merge.reduction.weight.copy_(torch.eye(2, 4))
        merge.norm.eps = 0.0
    normed = (torch.tensor([0.0, 2.0, 1.0, 3.0]) - 1.5) / torch.tensor([0.0, 2.0, 1.0, 3.0]).std(unbiased=False)
    torch.testing.assert_close(merge(x).flatten(), normed[:2])  # neighbours (0,0), (1,0), (0,1), (1,1)

    expand = PatchExpand(in_dim=4, out_dim=1)
    with torch.no_grad():
        expand.expand.weight.copy_(torch.eye(4))
    expand.norm = nn.Identity()
    tokens = torch.arange(4.0).view(1, 1, 1, 4)  # channels (p1, p2, c) = (0,0), (0,1), (1,0), (1,1)
    torch.testing.assert_close(expand(tokens)[0, :, :, 0], torch.tensor([[0.0, 1.0], [2.0, 3.0]]))


def test_drop_path_rates_and_linear_init() -> None:
    with torch.device("meta"):
        model = VMUNet()
    encoder = [block.drop_path.p for stage in model.layers for block in stage.blocks]
    decoder = [block.drop_path.p for stage in model.layers_up for block in stage.blocks]
    assert encoder[0] == 0.0 and encoder[-1] == 0.2 and encoder == sorted(encoder)
    assert decoder[0] == 0.2 and decoder[-1] == 0.0 and decoder == sorted(decoder, reverse=True)
    small = VMUNet(**TINY)
    proj = small.layers[0].blocks[0].self_attention.in_proj.weight
    assert 0.015 < proj.std() < 0.025  # trunc-normal(std 0.02), not PyTorch's default (std ≈ 0.2 at fan-in 8)
    assert all(m.bias is None or not m.bias.any() for m in small.modules() if isinstance(m, nn.Linear))


def test_vmamba_encoder_key_names() -> None:
    keys = set(VMUNet(**TINY).state_dict())
    for key in (
        "patch_embed.proj.weight",
        "layers.0.blocks.0.ln_1.weight",
        "layers.0.blocks.0.self_attention.x_proj_weight",
        "layers.0.blocks.0.self_attention.A_logs",
        "layers.0.downsample.reduction.weight",
        "layers_up.1.upsample.expand.weight",
        "final_up.expand.weight",
        "final_conv.weight",
    ):
        assert key in keys, key


def test_drop_path_drops_whole_samples_in_training_only() -> None:
    drop = DropPath(0.25)
    x = torch.ones(4000, 3, 2)
    torch.manual_seed(0)
    y = drop(x)
    kept = y[:, 0, 0] != 0
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert torch.equal(y != 0, kept[:, None, None].expand_as(y))  # a sample is dropped or kept as a whole
    assert abs(kept.float().mean().item() - 0.75) < 0.03
    assert drop.eval()(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
