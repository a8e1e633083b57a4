"""Depthwise deformable convolution v1 against a per-pixel bilinear-sampling loop (values and gradients)."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from medseg.models.layers.deform_conv import (
    DeformConv2d,
    deform_conv2d,
    deform_conv2d_torch,
    torchvision_deform_conv2d,
)


def bilinear_zero_padded(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` ``(C, H, W)`` at one real position; each of the four neighbours outside counts as 0."""
    height, width = image.shape[-2:]
    y0, x0 = math.floor(y.item()), math.floor(x.item())
    wy, wx = y - y0, x - x0
    value = image.new_zeros(image.shape[0])
    for yy, xx, weight in [
        (y0, x0, (1 - wy) * (1 - wx)),
        (y0, x0 + 1, (1 - wy) * wx),
        (y0 + 1, x0, wy * (1 - wx)),
        (y0 + 1, x0 + 1, wy * wx),
    ]:
        if 0 <= yy < height and 0 <= xx < width:
            value = value + weight * image[:, yy, xx]
    return value


def loop_reference(
    image: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    dilation: int,
) -> torch.Tensor:
    """Deformable convolution pixel by pixel and tap by tap, in the torchvision offset layout."""
    batch, channels = image.shape[:2]
    kh, kw = weight.shape[2:]
    out_h, out_w = offset.shape[2:]
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    per_group = channels // groups
    pixels = []
    for b, i, j in itertools.product(range(batch), range(out_h), range(out_w)):
        group_values = []
        for g in range(groups):
            chans = slice(g * per_group, (g + 1) * per_group)
            value = image.new_zeros(per_group)
            for ki, kj in itertools.product(range(kh), range(kw)):
                k = g * taps + ki * kw + kj
                y = i * stride - padding + ki * dilation + offset[b, 2 * k, i, j]
                x = j * stride - padding + kj * dilation + offset[b, 2 * k + 1, i, j]
                value = value + weight[chans, 0, ki, kj] * bilinear_zero_padded(image[b, chans], y, x)
            group_values.append(value)
        pixels.append(torch.cat(group_values))
    out = torch.stack(pixels).view(batch, out_h, out_w, channels).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def output_size(size: int, stride: int, padding: int, dilation: int, kernel: int = 3) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups"),
    [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2)],
    ids=["3x3", "stride2", "dilated-2-offset-groups"],
)
def test_matches_loop_reference(stride: int, padding: int, dilation: int, groups: int) -> None:
    g = torch.Generator().manual_seed(0)
    height, width, channels = 6, 7, 4
    out_h, out_w = output_size(height, stride, padding, dilation), output_size(width, stride, padding, dilation)
    image = torch.randn(2, channels, height, width, generator=g, dtype=torch.float64)
    offset = torch.randn(2, 2 * groups * 9, out_h, out_w, generator=g, dtype=torch.float64) * 2.5
    weight = torch.randn(channels, 1, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(channels, generator=g, dtype=torch.float64)
    # Some sampling positions fall outside the image, partly or completely.
    rows = torch.arange(out_h, dtype=torch.float64)[:, None] * stride - padding + offset[:, 0::2]
    assert (rows < 0).any() and (rows < -1).any() and (rows > height - 1).any()

    leaves = [t.requires_grad_() for t in (image, offset, weight, bias)]
    expected = loop_reference(*leaves, stride, padding, dilation)
    actual = deform_conv2d_torch(*leaves, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(actual, expected)
    cotangent = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, leaves, cotangent)
    actual_grads = torch.autograd.grad(actual, leaves, cotangent)
    for name, a, e in zip(("input", "offset", "weight", "bias"), actual_grads, expected_grads, strict=True):
        torch.testing.assert_close(a, e, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(("stride", "padding", "dilation"), [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_zero_offsets_is_a_depthwise_convolution(stride: int, padding: int, dilation: int) -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.randn(2, 5, 9, 8, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 1, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    expected = F.conv2d(image, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=5)
    offset = torch.zeros(2, 18, *expected.shape[2:], dtype=torch.float64)
    actual = deform_conv2d_torch(image, offset, weight, bias, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(actual, expected)


def test_module_and_dispatch() -> None:
    torch.manual_seed(0)
    layer = DeformConv2d(6)
    assert layer.weight.shape == (6, 1, 3, 3) and layer.bias is None
    assert layer.weight.abs().max() <= 1 / 3  # Conv2d init bound 1 / sqrt(fan_in = 9)
    x, offset = torch.randn(2, 6, 10, 12), torch.randn(2, 18, 10, 12)
    y = layer(x, offset)
    assert y.shape == (2, 6, 10, 12)
    torch.testing.assert_close(deform_conv2d(x, offset, layer.weight, padding=1), y)
    torch.testing.assert_close(y, deform_conv2d_torch(x, offset, layer.weight, padding=1), rtol=1e-4, atol=1e-5)
    if importlib.util.find_spec("torchvision") is None:
        assert torchvision_deform_conv2d() is None


def test_rejects_bad_shapes() -> None:
    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="offset"):
        deform_conv2d_torch(x, torch.zeros(1, 18, 7, 8), torch.zeros(4, 1, 3, 3), padding=1)
    with pytest.raises(ValueError, match="offset"):
        deform_conv2d_torch(x, torch.zeros(1, 54, 8, 8), torch.zeros(4, 1, 3, 3), padding=1)
    with pytest.raises(ValueError, match="depthwise"):
        deform_conv2d_torch(x, torch.zeros(1, 18, 8, 8), torch.zeros(4, 2, 3, 3), padding=1)
