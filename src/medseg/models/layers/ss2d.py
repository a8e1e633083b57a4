"""SS2D, the 2D selective scan of VMamba (Liu et al. 2024, "VMamba: Visual State Space Model") as used by VM-UNet
(Ruan et al. 2024, "VM-UNet: Vision Mamba UNet for Medical Image Segmentation"), docs/methods/vmunet.md#architecture.

Layout: **channels-last**, ``(batch, H, W, C)`` in and out, as in VMamba's VSS blocks.

With ``d_inner = expand * C`` and K = 4 scan directions::

    [x, z] = in_proj(input)                                   Linear C -> 2 d_inner, no bias
    x      = SiLU(depthwise conv2d_k(x))                      k = d_conv (3), "same" padding, bias
    xs     = the K sequences of x, length L = H W:
             k0 row-major (h W + w), k1 column-major (w H + h), k2 = k0 reversed, k3 = k1 reversed
    [δ_k, B_k, C_k] = x_proj_weight[k] xs_k                   per-direction (R + 2N, d_inner), no bias
    Δ_k    = dt_projs_weight[k] δ_k                           per-direction (d_inner, R), bias dt_projs_bias[k]
    ys     = selective_scan(xs, Δ, -exp(A_logs), B, C, Ds, Δ-bias, softplus), B/C grouped by direction
    y      = ys_0 + flip(ys_2) + back-transposed ys_1 + back-transposed flip(ys_3)      row-major again
    out    = out_proj(out_norm(y) ⊙ SiLU(z))                  LayerNorm(d_inner), Linear d_inner -> C, no bias

The per-direction projections, ``A_logs`` ``(K d_inner, N)`` and ``Ds`` ``(K d_inner)`` are raw parameters, as in
the official code (so thop-style counts skip them, see :mod:`medseg.models.params`). Initialisation: ``x_proj``
like a default ``nn.Linear``, ``dt_projs`` like Mamba's ``dt_proj`` (uniform weight, inverse-softplus bias),
``A_logs = log(1..N)``, ``Ds = 1``. VM-UNet later re-initialises every ``nn.Linear`` (trunc-normal 0.02); that is
the model's job, not this layer's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.layers.mamba import init_a_log, init_dt_bias
from medseg.models.layers.selective_scan import DEFAULT_CHUNK_SIZE, selective_scan

__all__ = ["SS2D"]

_DIRECTIONS = 4


class SS2D(nn.Module):
    """2D selective scan over four directions, channels-last ``(batch, H, W, d_model)`` in and out.

    Args:
        d_model: input and output channels C.
        d_state: SSM state size N.
        d_conv: kernel size of the depthwise 2D convolution (odd).
        expand: ``d_inner = expand * d_model``.
        dt_rank: rank of the Δ projections, or ``"auto"`` for ``ceil(d_model / 16)``.
        dt_min: smallest initial Δ.
        dt_max: largest initial Δ.
        dt_scale: scale of the ``dt_projs_weight`` initialisation.
        dt_init_floor: lower clamp of the initial Δ.
        dropout: dropout on the output (0 in VM-UNet).
        conv_bias: bias in the depthwise convolution.
        bias: bias in ``in_proj`` and ``out_proj``.
        chunk_size: chunk length of the pure-PyTorch scan (ignored by the CUDA kernel).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 3,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        dropout: float = 0.0,
        conv_bias: bool = True,
        bias: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk_size = chunk_size
        k, d_inner = _DIRECTIONS, self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_inner))
        with torch.no_grad():
            self.x_proj_weight.uniform_(-(d_inner**-0.5), d_inner**-0.5)
            dt_std = self.dt_rank**-0.5 * dt_scale
            self.dt_projs_weight.uniform_(-dt_std, dt_std)
        init_dt_bias(self.dt_projs_bias, dt_min, dt_max, dt_init_floor)
        self.A_logs = nn.Parameter(init_a_log(k * d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def _scan(self, x: torch.Tensor) -> torch.Tensor:
        """Scan ``x`` ``(batch, d_inner, H, W)`` four ways; return the summed outputs ``(batch, d_inner, H W)``."""
        batch, channels, height, width = x.shape
        length = height * width
        rows = x.reshape(batch, channels, length)
        cols = x.transpose(2, 3).reshape(batch, channels, length)
        forward = torch.stack([rows, cols], dim=1)
        xs = torch.cat([forward, forward.flip(-1)], dim=1)  # (batch, K, d_inner, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        ys = selective_scan(
            xs.reshape(batch, -1, length),
            dts.reshape(batch, -1, length),
            -torch.exp(self.A_logs.float()),
            Bs,
            Cs,
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().reshape(-1),
            delta_softplus=True,
            chunk_size=self.chunk_size,
        ).view(batch, _DIRECTIONS, channels, length)
        ys = ys[:, :2] + ys[:, 2:].flip(-1)  # undo the reversal: row-major and column-major sums
        from_cols = ys[:, 1].reshape(batch, channels, width, height).transpose(2, 3).reshape(batch, channels, length)
        return ys[:, 0] + from_cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply SS2D.

        Args:
            x: channels-last feature map ``(batch, H, W, d_model)``.

        Returns:
            ``(batch, H, W, d_model)``.
        """
        batch, height, width, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self._scan(x).transpose(1, 2).reshape(batch, height, width, self.d_inner)
        y = self.out_norm(y) * F.silu(z)
        return self.dropout(self.out_proj(y))
