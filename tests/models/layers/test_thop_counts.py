"""thop-style parameter counts (medseg.models.params) of the Mamba, SS2D and deformable-conv layers and of the rules
thop applies: exact types with a rule, custom modules' own parameters skipped, modules not called skipped."""

from __future__ import annotations

import math

import torch
from torch import nn

from medseg.models.layers.deform_conv import DeformConv2d
from medseg.models.layers.mamba import Mamba
from medseg.models.layers.ss2d import SS2D
from medseg.models.params import count_parameters, thop_style_count


class ParallelMamba(nn.Module):
    """ASC-Seg's PMB token mixer: LayerNorm, one Mamba shared by 4 channel chunks, LayerNorm again, Linear."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.mamba = Mamba(channels // 4)
        self.proj = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        normed = self.norm(tokens)
        mixed = torch.cat([self.mamba(c) + c for c in normed.chunk(4, dim=-1)], dim=-1)
        return self.proj(self.norm(mixed)) + tokens


class DeformBlock(nn.Module):
    """ASC-Seg's DCB core: an offset convolution (counted) driving a depthwise deformable convolution (skipped)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.offset = nn.Conv2d(channels, 18, 3, padding=1)
        self.deform = DeformConv2d(channels)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.deform(x, self.offset(x)))


def test_mamba_counts_nothing() -> None:
    with torch.device("meta"):
        block = ParallelMamba(32)
    assert count_parameters(block.mamba) == 1296
    assert thop_style_count(block) == 2 * 32 + 32 * 32 + 32
    assert count_parameters(block) == thop_style_count(block) + 1296


def test_deformable_weight_is_skipped() -> None:
    block = DeformBlock(8)
    assert thop_style_count(block) == (8 * 9 * 18 + 18) + 2 * 8
    assert count_parameters(block) - thop_style_count(block) == 8 * 9
    assert thop_style_count(block, torch.randn(1, 8, 6, 6)) == thop_style_count(block)


def test_ss2d_raw_parameters_are_skipped_and_vmunet_difference() -> None:
    """thop counts SS2D's in_proj, conv2d, out_norm and out_proj only. Over VM-UNet's blocks (encoder depths
    [2, 2, 2, 2] at widths 96..768, decoder [2, 2, 2, 1] at 768..96) the skipped parameters add up to the
    27.43 M - 22.04 M of docs/methods/vmunet.md#architecture."""
    skipped = {}
    for width in (96, 192, 384, 768):
        with torch.device("meta"):
            holder = nn.Sequential(SS2D(width))
        d_inner, rank = 2 * width, math.ceil(width / 16)
        assert count_parameters(holder) - thop_style_count(holder) == 4 * d_inner * (2 * rank + 50)
        skipped[width] = count_parameters(holder) - thop_style_count(holder)
    encoder = 2 * sum(skipped.values())
    decoder = 2 * skipped[768] + 2 * skipped[384] + 2 * skipped[192] + skipped[96]
    assert encoder + decoder == 5_389_824
    assert round(27.43 - (encoder + decoder) / 1e6, 2) == 22.04


def test_thop_rules() -> None:
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(5))
            self.linear = nn.Linear(5, 5)

    class MyLinear(nn.Linear):
        pass

    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)),  # Sequential: descended into
        nn.GroupNorm(2, 4),  # no rule
        MyLinear(4, 4),  # subclass: no rule
        Custom(),  # own parameter skipped, its Linear counted
    )
    assert thop_style_count(model) == (3 * 4 * 9 + 4) + 8 + (25 + 5)
    assert thop_style_count(nn.Linear(3, 4)) == 0  # the root itself never counts
    assert count_parameters(model) == thop_style_count(model) + 8 + 20 + 5


def test_modules_not_called_are_skipped_with_an_example_input() -> None:
    class DeadBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Conv2d(3, 4, 1)
            self.unused = nn.Linear(10, 10)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.used(x))

    model = DeadBranch().train()
    assert thop_style_count(model) == 16 + 110 + 8
    running_mean = model.bn.running_mean.clone()
    assert thop_style_count(model, torch.randn(2, 3, 4, 4)) == 16 + 8
    assert model.training and model.bn.training
    torch.testing.assert_close(model.bn.running_mean, running_mean)  # profiled in eval mode
