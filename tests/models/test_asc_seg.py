"""ASC-Seg: contract, true and thop-style parameter counts, deep-supervision heads, the parallel Mamba block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.models import ASCSeg, create_model
from medseg.models.asc_seg import PMB
from medseg.models.params import count_parameters, thop_style_count
from tests.models.contract import ModelContract

SMALL = {"channels": (4, 8, 12, 16)}
TRUE_PARAMS = 222_408
THOP_PARAMS = 218_688


class TestASCSeg(ModelContract):
    model_name = "asc_seg"
    small_kwargs = SMALL
    reference_configs = [
        ({"in_channels": 3, "num_classes": 1}, 0.2224e6),
        ({"in_channels": 3, "num_classes": 1, "channels": (16, 32, 48, 64)}, 0.812e6),
    ]

    def sizes(self, model: ASCSeg) -> list[tuple[int, int]]:
        return [(32, 32), (48, 32)]


def test_exact_parameter_counts_true_and_thop_style() -> None:
    """docs/methods/asc_seg.md#architecture: 0.2224 M true; thop 218,688 = the paper's 0.2186 M (Mamba blocks and
    deformable weights skipped)."""
    with torch.device("meta"):
        model = create_model("asc_seg", in_channels=3, num_classes=1)
    true, thop = count_parameters(model), thop_style_count(model)
    assert (true, thop) == (TRUE_PARAMS, THOP_PARAMS)
    assert abs(true - 0.2224e6) / 0.2224e6 <= 1e-3 and abs(thop - 0.2186e6) / 0.2186e6 <= 1e-3
    mamba = [count_parameters(block.pmb.mamba) for block in model.encoder]
    assert mamba == [252, 552, 900, 1296]
    assert true - thop == sum(mamba) + 9 * (8 + 16 + 24 + 32)


def test_thop_count_with_a_forward_pass() -> None:
    model = ASCSeg()
    assert thop_style_count(model, torch.randn(1, 3, 32, 32)) == THOP_PARAMS


def test_deep_supervision_heads() -> None:
    model = ASCSeg(num_classes=2, **SMALL).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(2, 3, 64, 48))
    assert out.logits.shape == (2, 2, 64, 48)
    assert [tuple(a.shape) for a in out.aux_logits] == [(2, 2, 32, 24), (2, 2, 16, 12), (2, 2, 8, 6)]
    assert [tuple(f.shape[1:]) for f in out.encoder] == [(4, 64, 48), (8, 32, 24), (12, 16, 12)]
    assert tuple(out.bottleneck.shape[1:]) == (16, 8, 6)
    assert [tuple(f.shape[1:]) for f in out.decoder] == [(16, 8, 6), (12, 16, 12), (8, 32, 24), (4, 64, 48)]
    assert out.final is out.decoder[-1]


def test_resized_head_logits_equal_the_official_upsample_then_conv() -> None:
    """The official head i up-samples d_i by 2^(i-1) before its 1x1 conv; resizing the logits is the same."""
    model = ASCSeg(**SMALL).eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 3, 32, 32))
        for head, feature, aux in zip(model.heads[1:], out.decoder[2::-1], out.aux_logits, strict=True):
            up = dict(size=(32, 32), mode="bilinear", align_corners=True)
            torch.testing.assert_close(F.interpolate(aux, **up), head(F.interpolate(feature, **up)))


def test_pmb_batches_its_chunks_through_one_shared_mamba() -> None:
    torch.manual_seed(0)
    block = PMB(8, chunk_size=16).eval()
    x = torch.randn(2, 8, 4, 6)
    with torch.no_grad():
        tokens = x.flatten(2).transpose(1, 2)
        normed = block.norm(tokens)
        mixed = torch.cat([block.mamba(c) + c for c in normed.chunk(4, dim=-1)], dim=-1)
        stage = block.proj(block.norm(mixed)) + tokens
        expected = block.ffn(block.norm(stage).transpose(1, 2).reshape(2, 8, 4, 6))
        torch.testing.assert_close(block(x), expected)
    assert sum(1 for m in block.modules() if isinstance(m, torch.nn.LayerNorm)) == 1


def test_channels_must_split_into_four_chunks() -> None:
    with pytest.raises(ValueError, match="4 chunks"):
        ASCSeg(channels=(6, 8, 12, 16))
    with pytest.raises(ValueError, match="four levels"):
        ASCSeg(channels=(8, 16, 24))
