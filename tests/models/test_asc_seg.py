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


def _msfa_weight_grads(msfa: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, mixed: bool) -> list[torch.Tensor]:
    """Weight gradients of the MSFA branches' dilated convolutions after one backward pass of ``<msfa(x), grad>``."""
    msfa.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
        out = msfa(x)
    (out.float() * grad).sum().backward()
    return [branch.body[0].weight.grad.clone() for branch in msfa.branches if branch.body[0].dilation[0] > 1]


def test_msfa_bf16_autocast_weight_gradients_match_float32_on_channels_last_input() -> None:
    """The PMBs hand the decoder channels-last maps; PyTorch's CPU backward of a dilated bf16 convolution on such an
    input returned NaN / 1e35 weight gradients (ASC-Seg's loss was NaN at its second bf16 step). The dilated branches
    now convolve an NCHW copy under autocast: their gradients are the float32 ones up to bf16 rounding (about 10%
    here, through the bf16 forward pass and its ReLU masks; the broken kernel gave NaN or errors of 100% and more)."""
    from medseg.models.asc_seg import MSFA

    torch.manual_seed(0)
    msfa = MSFA(24)
    x = torch.randn(2, 24, 32, 32).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 24, 32, 32)
    reference = _msfa_weight_grads(msfa, x, grad, mixed=False)
    bf16 = _msfa_weight_grads(msfa, x, grad, mixed=True)
    assert len(reference) == 5  # dilations 2, 3, 4 native, 3 up-down, 3 down-up
    for ref, got in zip(reference, bf16, strict=True):
        assert torch.isfinite(got).all()
        assert (got - ref).norm() <= 0.2 * ref.norm()


def test_bf16_autocast_training_step_has_finite_gradients() -> None:
    """The reported model (widths [8, 16, 24, 32]) at 64 px: every gradient of a bf16-autocast step is finite."""
    torch.manual_seed(0)
    model = ASCSeg()
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 20:44] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(torch.rand(2, 3, 64, 64))
    heads = [out.logits, *(F.interpolate(a.float(), size=(64, 64), mode="bilinear") for a in out.aux_logits)]
    sum(F.binary_cross_entropy_with_logits(h.float(), mask) for h in heads).backward()
    bad = [name for name, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad
