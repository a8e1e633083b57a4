"""The Mamba (v1) block of Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces".

Same parameters, names, shapes and initialisation as ``mamba_ssm.Mamba`` (v1.0.1), so its state dicts load as is.
For tokens ``(batch, L, d_model)`` and ``d_inner = expand * d_model``::

    [x, z]   = in_proj(tokens)                              two halves of 2 d_inner, no bias
    x        = SiLU(causal depthwise conv1d_k(x))           left padding k - 1, conv bias
    [δ, B, C] = x_proj(x)                                    split (dt_rank, N, N), no bias
    Δ        = dt_proj.weight δ                             dt_proj.bias enters the scan as Δ-bias
    y        = selective_scan(x, Δ, -exp(A_log), B, C, D, z, Δ-bias, softplus=True)
    out      = out_proj(y)                                  no bias

Initialisation (S4D-real and the Mamba Δ initialisation): ``A_log[d, n] = log(n + 1)``, ``D = 1``,
``dt_proj.weight ~ U(±dt_scale / sqrt(dt_rank))``, ``dt_proj.bias = softplus⁻¹(dt)`` with
``dt = exp(U(log dt_min, log dt_max))`` clamped at ``dt_init_floor``; the other layers keep PyTorch's default.
The scan direction is the given token order. ASC-Seg's parallel Mamba block (docs/methods/asc_seg.md#architecture,
docs/methods/mamba.md#mamba-block) uses it with ``d_model = C / 4``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medseg.models.layers.selective_scan import DEFAULT_CHUNK_SIZE, selective_scan

__all__ = ["Mamba", "init_a_log", "init_dt_bias"]


def init_a_log(rows: int, d_state: int) -> torch.Tensor:
    """``log(1 .. d_state)`` repeated over ``rows``: the S4D-real initialisation of ``A_log``.

    Args:
        rows: number of channels (rows).
        d_state: SSM state size N.

    Returns:
        ``(rows, d_state)`` float32 on the current default device; left uninitialised on the meta device
        (shapes only), where computing it would cost seconds of first-use set-up.
    """
    a_log = torch.empty(rows, d_state, dtype=torch.float32)
    if not a_log.is_meta:
        with torch.no_grad():
            a_log.copy_(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32, device=a_log.device)))
    return a_log


def init_dt_bias(
    bias: torch.Tensor, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4
) -> torch.Tensor:
    """Fill ``bias`` in place with ``softplus⁻¹(dt)``, ``dt`` log-uniform in ``[dt_min, dt_max]`` (Mamba's Δ init).

    Args:
        bias: tensor to fill, any shape.
        dt_min: smallest initial step size.
        dt_max: largest initial step size.
        dt_init_floor: lower clamp of the sampled step size.

    Returns:
        ``bias``; a tensor on the meta device (shapes only, e.g. for parameter counts) is returned as it is.
    """
    if bias.is_meta:
        return bias
    with torch.no_grad():
        dt = torch.exp(
            torch.rand(bias.shape, device=bias.device) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        return bias.copy_(dt + torch.log(-torch.expm1(-dt)))


class Mamba(nn.Module):
    """Mamba v1 block: tokens ``(batch, L, d_model)`` to tokens ``(batch, L, d_model)``.

    Args:
        d_model: token width.
        d_state: SSM state size N.
        d_conv: width of the causal depthwise convolution.
        expand: ``d_inner = expand * d_model``.
        dt_rank: rank of the Δ projection, or ``"auto"`` for ``ceil(d_model / 16)``.
        dt_min: smallest initial Δ.
        dt_max: largest initial Δ.
        dt_init: ``"random"`` (uniform ``dt_proj.weight``) or ``"constant"``.
        dt_scale: scale of the ``dt_proj.weight`` initialisation.
        dt_init_floor: lower clamp of the initial Δ.
        conv_bias: bias in the depthwise convolution.
        bias: bias in ``in_proj`` and ``out_proj``.
        chunk_size: chunk length of the pure-PyTorch scan (ignored by the CUDA kernel).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        dt_std = self.dt_rank**-0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                self.dt_proj.weight.fill_(dt_std)
            else:
                self.dt_proj.weight.uniform_(-dt_std, dt_std)
        init_dt_bias(self.dt_proj.bias, dt_min, dt_max, dt_init_floor)

        self.A_log = nn.Parameter(init_a_log(self.d_inner, d_state))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Mix the tokens along the sequence.

        Args:
            hidden_states: ``(batch, L, d_model)``.

        Returns:
            ``(batch, L, d_model)``.
        """
        length = hidden_states.shape[1]
        x, z = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :length])
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (dt @ self.dt_proj.weight.t()).transpose(1, 2)
        y = selective_scan(
            x,
            dt,
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            chunk_size=self.chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))
