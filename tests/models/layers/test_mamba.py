"""Mamba v1 block and SS2D: shapes, backward, initialisation, parameter counts and the wiring of both blocks checked
against the float64 sequential reference scan."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.models.layers.mamba import Mamba
from medseg.models.layers.selective_scan import selective_scan_ref
from medseg.models.layers.ss2d import SS2D


def mamba_formula(d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2) -> int:
    """docs/methods/mamba.md#mamba-block: parameters of one Mamba block."""
    d_inner, rank = expand * d_model, math.ceil(d_model / 16)
    return (
        d_model * 2 * d_inner
        + d_inner * (d_conv + 1)
        + d_inner * (rank + 2 * d_state)
        + rank * d_inner
        + d_inner
        + d_inner * d_state
        + d_inner
        + d_inner * d_model
    )


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("d_model", "stated"), [(2, 252), (4, 552), (6, 900), (8, 1296), (96, None)])
def test_mamba_parameter_count(d_model: int, stated: int | None) -> None:
    """ASC-Seg's four levels (d_model = C/4 = 2, 4, 6, 8) have 252, 552, 900 and 1296 Mamba parameters."""
    with torch.device("meta"):
        block = Mamba(d_model)
    assert count(block) == mamba_formula(d_model)
    if stated is not None:
        assert count(block) == stated


def test_mamba_initialisation() -> None:
    torch.manual_seed(0)
    block = Mamba(40, dt_min=1e-3, dt_max=0.1)
    assert block.d_inner == 80 and block.dt_rank == 3
    torch.testing.assert_close(block.A_log, torch.log(torch.arange(1.0, 17.0)).repeat(80, 1))
    torch.testing.assert_close(block.D, torch.ones(80))
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert block.dt_proj.weight.abs().max() <= 3**-0.5
    assert block.conv1d.groups == 80 and block.conv1d.padding == (3,)
    assert block.in_proj.bias is None and block.x_proj.bias is None and block.out_proj.bias is None


def test_mamba_shapes_backward_and_causality() -> None:
    torch.manual_seed(0)
    block = Mamba(12, chunk_size=8)
    x = torch.randn(3, 29, 12, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    changed = x.detach().clone()
    changed[:, 20:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(block(changed)[:, :20], y[:, :20].detach())


def test_mamba_equals_its_formula_with_the_reference_scan() -> None:
    torch.manual_seed(0)
    block = Mamba(20, chunk_size=4).double()
    tokens = torch.randn(2, 11, 20, dtype=torch.float64)
    xz = tokens @ block.in_proj.weight.t()
    x, z = xz[..., :40], xz[..., 40:]
    x = F.pad(x.transpose(1, 2), (3, 0))
    x = F.silu(F.conv1d(x, block.conv1d.weight, block.conv1d.bias, groups=40))
    dbc = x.transpose(1, 2) @ block.x_proj.weight.t()
    dt, B, C = dbc[..., :2], dbc[..., 2:18], dbc[..., 18:]
    y = selective_scan_ref(
        x,
        (dt @ block.dt_proj.weight.t()).transpose(1, 2),
        -torch.exp(block.A_log),
        B.transpose(1, 2),
        C.transpose(1, 2),
        block.D,
        z.transpose(1, 2),
        block.dt_proj.bias,
        delta_softplus=True,
    )
    torch.testing.assert_close(block(tokens), y.transpose(1, 2) @ block.out_proj.weight.t())


def ss2d_formula(d_model: int, d_state: int = 16, d_conv: int = 3, expand: int = 2) -> tuple[int, int]:
    """(parameters of the called nn layers, raw per-direction parameters) of one SS2D block, K = 4."""
    d_inner, rank = expand * d_model, math.ceil(d_model / 16)
    layers = d_model * 2 * d_inner + d_inner * (d_conv**2 + 1) + 2 * d_inner + d_inner * d_model
    raw = 4 * (rank + 2 * d_state) * d_inner + 4 * d_inner * rank + 4 * d_inner + 4 * d_inner * d_state + 4 * d_inner
    return layers, raw


@pytest.mark.parametrize("d_model", [8, 96])
def test_ss2d_parameter_count(d_model: int) -> None:
    with torch.device("meta"):
        block = SS2D(d_model)
    layers, raw = ss2d_formula(d_model)
    assert count(block) == layers + raw
    assert block.x_proj_weight.shape == (4, math.ceil(d_model / 16) + 32, 2 * d_model)
    assert block.A_logs.shape == (8 * d_model, 16) and block.Ds.shape == (8 * d_model,)


def test_ss2d_shapes_and_backward() -> None:
    torch.manual_seed(0)
    block = SS2D(8, chunk_size=16)
    x = torch.randn(2, 6, 9, 8, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
    assert x.grad is not None


def test_ss2d_scans_four_directions() -> None:
    """Rebuild SS2D with one reference scan per direction, each over an explicit pixel order, then sum row-major."""
    torch.manual_seed(0)
    block = SS2D(4, chunk_size=4).double()
    height, width = 3, 5
    image = torch.randn(2, height, width, 4, dtype=torch.float64)
    x, z = (image @ block.in_proj.weight.t()).chunk(2, dim=-1)
    x = F.silu(block.conv2d(x.permute(0, 3, 1, 2))).flatten(2)  # (batch, d_inner, H W), row-major
    row_major = torch.arange(height * width)
    col_major = torch.arange(height * width).view(height, width).t().reshape(-1)  # pixel visited at step t
    orders = [row_major, col_major, row_major.flip(0), col_major.flip(0)]
    d_inner, rank = block.d_inner, block.dt_rank
    y = torch.zeros_like(x)
    for k, order in enumerate(orders):
        xs = x[:, :, order]
        dbc = torch.einsum("bdl,cd->bcl", xs, block.x_proj_weight[k])
        dt, B, C = dbc[:, :rank], dbc[:, rank : rank + 16], dbc[:, rank + 16 :]
        channels = slice(k * d_inner, (k + 1) * d_inner)
        ys = selective_scan_ref(
            xs,
            torch.einsum("brl,dr->bdl", dt, block.dt_projs_weight[k]),
            -torch.exp(block.A_logs[channels]),
            B,
            C,
            block.Ds[channels],
            delta_bias=block.dt_projs_bias[k],
            delta_softplus=True,
        )
        y[:, :, order] += ys
    y = block.out_norm(y.transpose(1, 2).reshape(2, height, width, d_inner)) * F.silu(z)
    torch.testing.assert_close(block(image), block.out_proj(y))
