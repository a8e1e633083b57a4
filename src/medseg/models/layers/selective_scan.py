"""The selective scan of Mamba (S6) in pure PyTorch, with the ``mamba_ssm`` CUDA kernel as an optional fast path.

The recurrence (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", Algorithm 2;
the ``selective_scan_fn`` semantics of the ``mamba_ssm`` package), for batch b, channel d and state n::

    Δ_t = softplus(Δ_t + Δ_bias)                  bias and softplus optional
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t u_t B_t      h_{-1} = 0, A real and negative (A = -exp(A_log))
    y_t = Σ_n C_t[n] h_t[n] + D u_t               D optional
    out = y ⊙ SiLU(z)                             gate optional

``B`` and ``C`` are either shared by all channels, ``(batch, N, L)`` (Mamba v1), or grouped, ``(batch, G, N, L)``,
where channel d reads group ``d // (D / G)`` (SS2D of VMamba / VM-UNet stacks its K = 4 scan directions as groups).

Three entry points with the signature of ``mamba_ssm``'s ``selective_scan_fn``:

* :func:`selective_scan_ref`: a loop over L with plain autograd, the ground truth of the tests (use float64).
* :func:`selective_scan_chunked`: the default CPU/GPU path. The sequence is cut into chunks of T steps
  (a power of two). Inside a chunk, the linear recurrence ``h_t = a_t h_{t-1} + x_t`` with ``a_t = exp(Δ_t A)``
  and ``x_t = Δ_t u_t B_t`` is solved by a work-efficient parallel prefix scan (Blelloch 1990) over the
  associative pairs ``(a, x) ∘ (a', x') = (a a', a' x + x')``: 2·log2(T) vectorised steps, O(T) work. Every factor
  is a product of decays ``exp(Δ A) ∈ (0, 1]``, so no exponent is ever positive and nothing overflows for any L,
  Δ or A (the cumulative-sum form ``exp(c_t) Σ exp(-c_k) x_k`` overflows once Σ Δ|A| within a chunk passes ~88 in
  float32). The state ``h`` is carried from one chunk to the next. Memory is bounded: only a few
  ``(T, batch, D, N)`` chunk buffers exist at any time, never ``(batch, D, L, N)``. The backward pass is written by
  hand (:class:`SelectiveScanFn`): it keeps only the chunk-entry states ``(batch, D, N)`` per chunk, walks the
  chunks from last to first, recomputes each chunk's states from its entry state, and solves the adjoint recurrence
  ``λ_t = C_t ∂L/∂y_t + a_{t+1} λ_{t+1}`` with the mirrored (suffix) scan. The scan always runs in float32 (float64
  when the inputs are float64), also under bf16/fp16 autocast.
* :func:`selective_scan`: uses ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` for CUDA tensors when
  that package is importable, the chunked scan otherwise.

While a model is traced (``torch.jit.trace``, and the ONNX exporter, which traces), both chunked entry points run
:func:`_traced_scan` instead: the forward pass of :class:`SelectiveScanFn` with the same operations on new tensors
(the in-place updates of chunk views and the ``out=`` arguments are what the ONNX exporter cannot express), so a
traced model gives the eager outputs bit for bit. Its loop over the chunks is compiled by TorchScript
(:func:`_scan_chunks`), so the trace keeps it as a loop (an ONNX ``Loop``) over however many chunks the input has:
the graph stays small, a chunk's buffers are freed before the next one, and the sequence length stays free.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SelectiveScanFn",
    "mamba_ssm_selective_scan",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_ref",
]

DEFAULT_CHUNK_SIZE = 128
"""Chunk length T of :func:`selective_scan_chunked`.

Picked with ``benchmarks/bench_selective_scan.py`` (``benchmarks/results/selective_scan.md``): for one Mamba block at
batch 8, L = 3136, d_inner = 192 on 2 CPU threads, T = 128 gave the fastest forward + backward (0.57 s) and the lowest
peak memory (562 MB). T = 64 is within the run-to-run noise of that shared machine, T = 32 pays for twice the Python
steps, and T = 256 for buffers that no longer stay in cache (slower, 765 MB). Longer chunks also mean fewer
sequential steps on a GPU, and long, narrow scans gain from them (ASC-Seg's first level, L = 65,536 with d_inner = 4:
T = 1024 was about 25% faster than T = 64 in a side measurement; pass ``chunk_size`` for such shapes). The chunk
buffers are five ``(T, batch, D, N)`` tensors: 63 MB in float32 at the benchmark size.
"""

_SOFTPLUS_THRESHOLD = 20.0  # softplus(x) = x above this, as torch.nn.functional.softplus and the CUDA kernel do

Tensor = torch.Tensor


def _compute_dtype(u: Tensor) -> torch.dtype:
    """Return float64 for float64 inputs, float32 otherwise (half-precision inputs are scanned in float32)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _check_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> int:
    """Validate the shapes of a selective-scan call and return the number of B/C groups (1 when shared)."""
    if u.ndim != 3:
        raise ValueError(f"u must be (batch, D, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have the shape of u {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.ndim != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"A must be a real (D={dim}, N) tensor, got shape {tuple(A.shape)} dtype {A.dtype}")
    state = A.shape[1]
    if B.shape != C.shape:
        raise ValueError(f"B and C must have the same shape, got {tuple(B.shape)} and {tuple(C.shape)}")
    if B.ndim == 3 and B.shape == (batch, state, length):
        groups = 1
    elif B.ndim == 4 and B.shape[0] == batch and B.shape[2:] == (state, length) and dim % B.shape[1] == 0:
        groups = B.shape[1]
    else:
        raise ValueError(
            f"B and C must be (batch, N, L) = {(batch, state, length)} or (batch, G, N, L) with G dividing D={dim}, "
            f"got {tuple(B.shape)}"
        )
    for name, vector in (("D", D), ("delta_bias", delta_bias)):
        if vector is not None and vector.shape != (dim,):
            raise ValueError(f"{name} must be ({dim},), got {tuple(vector.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have the shape of u {tuple(u.shape)}, got {tuple(z.shape)}")
    return groups


def _autocast_off(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Disable autocast on ``device`` (the scan runs in float32); a no-op where autocast does not exist (meta)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _softplus_grad(x: Tensor) -> Tensor:
    """Derivative of ``F.softplus`` (threshold 20): sigmoid(x), and 1 where softplus is the identity."""
    return torch.where(x > _SOFTPLUS_THRESHOLD, torch.ones_like(x), torch.sigmoid(x))


def _silu_grad(z: Tensor) -> Tensor:
    """Derivative of SiLU: σ(z)(1 + z(1 - σ(z)))."""
    sig = torch.sigmoid(z)
    return sig * (1 + z * (1 - sig))


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Sequential reference of the selective scan: one step per position, autograd for the gradients.

    Slow (L Python steps) and memory-hungry under autograd; meant for tests, in float64.

    Args:
        u: input ``(batch, D, L)``.
        delta: step sizes Δ ``(batch, D, L)`` (before bias and softplus).
        A: state matrix diagonal ``(D, N)``, real and negative.
        B: input projection ``(batch, N, L)`` (shared) or ``(batch, G, N, L)`` (grouped).
        C: output projection, same shape as ``B``.
        D: skip weight ``(D,)``.
        z: gate ``(batch, D, L)``; the output is multiplied by ``SiLU(z)``.
        delta_bias: added to Δ before the softplus, ``(D,)``.
        delta_softplus: apply softplus to Δ.
        return_last_state: also return the final state.

    Returns:
        ``out`` ``(batch, D, L)`` in the dtype of ``u``, or ``(out, last_state)`` with the state ``(batch, D, N)`` in
        float32 (float64 for float64 inputs).
    """
    groups = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    dtype = _compute_dtype(u)
    batch, dim, length = u.shape
    u_, dt = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    A_ = A.to(dtype)
    if B.ndim == 3:
        B_, C_ = B.to(dtype).unsqueeze(1), C.to(dtype).unsqueeze(1)
    else:
        B_ = B.to(dtype).repeat_interleave(dim // groups, dim=1)
        C_ = C.to(dtype).repeat_interleave(dim // groups, dim=1)
    h = u_.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A_) * h + (dt[:, :, t] * u_[:, :, t])[:, :, None] * B_[..., t]
        ys.append((h * C_[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u_.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u_
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(u.dtype)
    return (out, h) if return_last_state else out


def _prefix_scan_(a: Tensor, x: Tensor) -> None:
    """Solve ``x_t <- a_t x_{t-1} + x_t`` along dim 0 in place (Blelloch up-sweep/down-sweep); ``a`` is clobbered.

    Both tensors are contiguous with the same shape and a power-of-two length along dim 0.
    """
    n, rest = x.shape[0], x.shape[1:]
    stride = 1
    while stride < n:
        xs, as_ = x.view(n // (2 * stride), 2 * stride, *rest), a.view(n // (2 * stride), 2 * stride, *rest)
        xs[:, -1].addcmul_(as_[:, -1], xs[:, stride - 1])
        if 2 * stride < n:
            as_[:, -1].mul_(as_[:, stride - 1])
        stride *= 2
    stride = n // 4
    while stride >= 1:
        xs, as_ = x.view(n // (2 * stride), 2 * stride, *rest), a.view(n // (2 * stride), 2 * stride, *rest)
        xs[1:, stride - 1].addcmul_(as_[1:, stride - 1], xs[:-1, -1])
        stride //= 2


def _suffix_scan_(a: Tensor, x: Tensor) -> None:
    """Solve ``x_t <- a_t x_{t+1} + x_t`` along dim 0 in place (mirror of :func:`_prefix_scan_`); ``a`` is clobbered."""
    n, rest = x.shape[0], x.shape[1:]
    stride = 1
    while stride < n:
        xs, as_ = x.view(n // (2 * stride), 2 * stride, *rest), a.view(n // (2 * stride), 2 * stride, *rest)
        xs[:, 0].addcmul_(as_[:, 0], xs[:, stride])
        if 2 * stride < n:
            as_[:, 0].mul_(as_[:, stride])
        stride *= 2
    stride = n // 4
    while stride >= 1:
        xs, as_ = x.view(n // (2 * stride), 2 * stride, *rest), a.view(n // (2 * stride), 2 * stride, *rest)
        xs[:-1, stride].addcmul_(as_[:-1, stride], xs[1:, 0])
        stride //= 2


def _prefix_scan(a: Tensor, x: Tensor, n: int) -> Tensor:
    """Out-of-place :func:`_prefix_scan_` for tracing, in its odd-even form: the same products and sums.

    Going up, every odd position is combined with the even one before it (the up-sweep's first level) and the odd
    positions are scanned the same way; going down, every even position is finished from the odd position before
    it (the down-sweep's last level). Each level moves data of its own length only. Written for TorchScript
    (:func:`_scan_chunks` compiles it).

    Args:
        a: decays ``(n, R)``.
        x: inputs ``(n, R)``.
        n: their length along dim 0, a power of two.

    Returns:
        The solved ``x`` ``(n, R)``.
    """
    decays: list[Tensor] = []
    inputs: list[Tensor] = []
    while n > 1:
        pairs_a, pairs_x = a.reshape(n // 2, 2, -1), x.reshape(n // 2, 2, -1)
        decays.append(pairs_a[:, 0])
        inputs.append(pairs_x[:, 0])
        x = torch.addcmul(pairs_x[:, 1], pairs_a[:, 1], pairs_x[:, 0])
        a = pairs_a[:, 1] * pairs_a[:, 0]
        n = n // 2
    for level in range(len(decays) - 1, -1, -1):
        a_even, x_even = decays[level], inputs[level]
        even = torch.cat([x_even[:1], torch.addcmul(x_even[1:], a_even[1:], x[:-1])])
        x = torch.stack([even, x], dim=1).reshape(2 * x.shape[0], -1)
    return x


def _scan_chunks(dt: Tensor, dtu: Tensor, B: Tensor, C: Tensor, A: Tensor, chunk: int) -> tuple[Tensor, Tensor]:
    """The chunk loop of a traced scan, on :class:`_Scan`'s time-major tensors (TorchScript-compatible).

    The sequence is padded to whole chunks with Δ = 0 (decay 1, input 0: the state passes through unchanged);
    every chunk enters with the state the previous one left, as in :meth:`SelectiveScanFn.forward`.

    Args:
        dt: Δ ``(L, batch, G, Dg)`` after bias and softplus.
        dtu: Δ u ``(L, batch, G, Dg)``.
        B: ``(L, batch, G, N)``.
        C: ``(L, batch, G, N)``.
        A: ``(G, Dg, N)``.
        chunk: chunk length, a power of two.

    Returns:
        ``y`` ``(L, batch, G, Dg)`` and the last state ``(batch, G, Dg, N)``.
    """
    length = dt.shape[0]
    pad = (chunk - length % chunk) % chunk
    dt, dtu = F.pad(dt, [0, 0, 0, 0, 0, 0, 0, pad]), F.pad(dtu, [0, 0, 0, 0, 0, 0, 0, pad])
    B, C = F.pad(B, [0, 0, 0, 0, 0, 0, 0, pad]), F.pad(C, [0, 0, 0, 0, 0, 0, 0, pad])
    state = torch.zeros_like(dt[0]).unsqueeze(-1) * A[:, :, :1]  # (batch, G, Dg, 1), broadcast over N below
    last = state
    ys: list[Tensor] = []
    for start in range(0, length + pad, chunk):
        a = torch.exp(dt[start : start + chunk].unsqueeze(-1) * A)
        x = dtu[start : start + chunk].unsqueeze(-1) * B[start : start + chunk].unsqueeze(-2)
        x = torch.cat([torch.addcmul(x[:1], a[:1], state.unsqueeze(0)), x[1:]])
        h = _prefix_scan(a.reshape(chunk, -1), x.reshape(chunk, -1), chunk).view_as(a)
        rows = h.reshape(-1, h.shape[-2], h.shape[-1])
        ys.append(torch.bmm(rows, C[start : start + chunk].reshape(-1, h.shape[-1], 1)).view_as(a[..., 0]))
        state = h[chunk - 1]
        last = h[(length - 1) % chunk]  # the last chunk's is the state at position L - 1
    return torch.cat(ys)[:length], last


@functools.cache
def _scripted_scan_chunks() -> Callable[..., tuple[Tensor, Tensor]]:
    """:func:`_scan_chunks` compiled by TorchScript (once, on first use)."""
    return torch.jit.script(_scan_chunks)


def _time_major(t: Tensor, groups: int, dtype: torch.dtype) -> Tensor:
    """``(batch, G*X, L)`` or ``(batch, G, X, L)`` -> contiguous ``(L, batch, G, X)`` in ``dtype``."""
    batch, length = t.shape[0], t.shape[-1]
    return t.to(dtype).reshape(batch, groups, -1, length).permute(3, 0, 1, 2).contiguous()


def _from_time_major(t: Tensor, shape: torch.Size, dtype: torch.dtype) -> Tensor:
    """Inverse of :func:`_time_major`: ``(L, batch, G, X)`` -> ``shape`` (batch first, L last) in ``dtype``."""
    return t.permute(1, 2, 3, 0).reshape(shape).to(dtype)


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


class _Scan:
    """Time-major copies of the inputs of one selective-scan call, shared by the forward and backward chunk loops.

    Layout: ``u``, ``dt`` and ``dtu`` ``(L, batch, G, Dg)``; ``B`` and ``C`` ``(L, batch, G, N)``; ``A``
    ``(G, Dg, N)``; states ``(batch, G, Dg, N)``. ``dt`` is Δ after bias and softplus; ``dt_raw`` before softplus.
    """

    def __init__(
        self,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        delta_bias: Tensor | None,
        delta_softplus: bool,
        groups: int,
    ) -> None:
        self.dtype = _compute_dtype(u)
        self.batch, dim, self.length = u.shape
        self.groups, self.state = groups, A.shape[1]
        self.group_dim = dim // groups
        self.u = _time_major(u, groups, self.dtype)
        dt = _time_major(delta, groups, self.dtype)
        if delta_bias is not None:
            dt = dt + delta_bias.to(self.dtype).view(groups, self.group_dim)
        self.dt_raw = dt
        self.dt = F.softplus(dt) if delta_softplus else dt
        self.dtu = self.dt * self.u
        self.A = A.to(self.dtype).view(groups, self.group_dim, self.state)
        self.B = _time_major(B, groups, self.dtype)
        self.C = _time_major(C, groups, self.dtype)

    def buffer(self, chunk: int) -> Tensor:
        """An uninitialised chunk buffer ``(chunk, batch, G, Dg, N)``."""
        return self.u.new_empty(chunk, self.batch, self.groups, self.group_dim, self.state)

    def decay_and_input(self, start: int, stop: int, a: Tensor, x: Tensor) -> None:
        """Fill ``a[:n] = exp(Δ A)`` and ``x[:n] = Δ u B`` for positions ``start:stop``; zero the padding ``n:``."""
        n = stop - start
        torch.mul(self.dt[start:stop].unsqueeze(-1), self.A, out=a[:n]).exp_()
        torch.mul(self.dtu[start:stop].unsqueeze(-1), self.B[start:stop].unsqueeze(-2), out=x[:n])
        a[n:].zero_()
        x[n:].zero_()

    def contract(self, h: Tensor, v: Tensor, start: int, stop: int, out: Tensor) -> None:
        """``out[t, b, g, d] = Σ_n h[t, b, g, d, n] v[t, b, g, n]`` for the ``stop - start`` valid positions."""
        n, rows = stop - start, (stop - start) * self.batch * self.groups
        torch.bmm(h[:n].view(rows, self.group_dim, self.state), v[start:stop].view(rows, self.state, 1), out=out)

    def contract_channels(self, w: Tensor, h: Tensor, start: int, stop: int, out: Tensor) -> None:
        """``out[t, b, g, n] = Σ_d w[t, b, g, d] h[t, b, g, d, n]`` for the ``stop - start`` valid positions."""
        n, rows = stop - start, (stop - start) * self.batch * self.groups
        torch.bmm(w[start:stop].view(rows, 1, self.group_dim), h[:n].view(rows, self.group_dim, self.state), out=out)


def _chunks(length: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """``(start, stop, padded length)`` of every chunk; the padded length is a power of two."""
    return [
        (s, min(s + chunk_size, length), _next_pow2(min(s + chunk_size, length) - s))
        for s in range(0, length, chunk_size)
    ]


class SelectiveScanFn(torch.autograd.Function):
    """Chunked selective scan with a hand-written, chunk-recomputing backward pass (see the module docstring).

    Call it through :func:`selective_scan_chunked`. ``forward`` returns ``(out, last_state)``.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        z: Tensor | None,
        delta_bias: Tensor | None,
        delta_softplus: bool,
        chunk_size: int,
    ) -> tuple[Tensor, Tensor]:
        groups = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
        with _autocast_off(u.device):
            scan = _Scan(u, delta, A, B, C, delta_bias, delta_softplus, groups)
            chunks = _chunks(scan.length, chunk_size)
            states = scan.u.new_empty(len(chunks) + 1, scan.batch, groups, scan.group_dim, scan.state)
            states[0].zero_()
            y = torch.empty_like(scan.u)
            size = chunks[0][2] if chunks else 1
            a, x = scan.buffer(size), scan.buffer(size)
            for index, (start, stop, padded) in enumerate(chunks):
                a_c, x_c = a[:padded], x[:padded]
                scan.decay_and_input(start, stop, a_c, x_c)
                x_c[0].addcmul_(a_c[0], states[index])
                _prefix_scan_(a_c, x_c)
                scan.contract(x_c, scan.C, start, stop, out=y[start:stop].view(-1, scan.group_dim, 1))
                states[index + 1] = x_c[stop - start - 1]
            y = _from_time_major(y, u.shape, scan.dtype)
            if D is not None:
                y = y + D.to(scan.dtype)[:, None] * u.to(scan.dtype)
            out = y * F.silu(z.to(scan.dtype)) if z is not None else y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states[:-1], y if z is not None else None)
        ctx.delta_softplus, ctx.chunk_size, ctx.groups = delta_softplus, chunk_size, groups
        ctx.set_materialize_grads(False)
        last_state = states[-1].reshape(scan.batch, -1, scan.state)
        return out.to(u.dtype), last_state

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor | None, grad_last: Tensor | None) -> tuple[Tensor | None, ...]:
        u, delta, A, B, C, D, z, delta_bias, entry_states, y = ctx.saved_tensors
        groups = ctx.groups
        with _autocast_off(u.device):
            scan = _Scan(u, delta, A, B, C, delta_bias, ctx.delta_softplus, groups)
            dtype = scan.dtype
            grad_out = torch.zeros_like(u, dtype=dtype) if grad_out is None else grad_out.to(dtype)
            grad_z = None
            if z is not None:
                z_ = z.to(dtype)
                grad_z = (grad_out * y * _silu_grad(z_)).to(z.dtype)
                grad_out = grad_out * F.silu(z_)
            grad_D = (grad_out * u.to(dtype)).sum((0, 2)).to(D.dtype) if D is not None else None
            gy = _time_major(grad_out, groups, dtype)

            grad_dt = torch.empty_like(scan.u)  # Σ_n λ h_{t-1} a A: the part of ∂L/∂Δ that flows through exp(Δ A)
            lam_b = torch.empty_like(scan.u)  # Σ_n λ_t B_t: gives ∂L/∂u and the input part of ∂L/∂Δ
            grad_B, grad_C = torch.empty_like(scan.B), torch.empty_like(scan.C)
            grad_A = torch.zeros_like(scan.A)
            carry = (
                grad_last.to(dtype).view_as(entry_states[0])
                if grad_last is not None
                else torch.zeros_like(entry_states[0])
            )
            chunks = _chunks(scan.length, ctx.chunk_size)
            size = chunks[0][2] if chunks else 1
            a, work, h, lam, alpha = (scan.buffer(size) for _ in range(5))
            for index in range(len(chunks) - 1, -1, -1):
                start, stop, padded = chunks[index]
                n = stop - start
                a_c, work_c, h_c, lam_c, alpha_c = a[:padded], work[:padded], h[:padded], lam[:padded], alpha[:padded]
                # States of the chunk, recomputed from its entry state.
                scan.decay_and_input(start, stop, a_c, h_c)
                h_c[0].addcmul_(a_c[0], entry_states[index])
                work_c.copy_(a_c)
                _prefix_scan_(work_c, h_c)
                # Adjoint λ_t = C_t gy_t + a_{t+1} λ_{t+1}, entered with the carry from the next chunk.
                torch.mul(gy[start:stop].unsqueeze(-1), scan.C[start:stop].unsqueeze(-2), out=lam_c[:n])
                lam_c[n:].zero_()
                lam_c[n - 1].add_(carry)
                alpha_c[:-1].copy_(a_c[1:])
                alpha_c[-1].zero_()
                _suffix_scan_(alpha_c, lam_c)
                carry = a_c[0] * lam_c[0]
                # Gradients of C, B and the Δ u B input term.
                rows = n * scan.batch * groups
                scan.contract_channels(gy, h_c, start, stop, out=grad_C[start:stop].view(rows, 1, scan.state))
                scan.contract_channels(scan.dtu, lam_c, start, stop, out=grad_B[start:stop].view(rows, 1, scan.state))
                scan.contract(lam_c, scan.B, start, stop, out=lam_b[start:stop].view(rows, scan.group_dim, 1))
                # Decay term: P = λ_t h_{t-1} a_t, ∂L/∂Δ_t += Σ_n P A and ∂L/∂A += Σ_{b,t} P Δ_t.
                prod = work_c[:n]
                torch.mul(lam_c[1:n], h_c[: n - 1], out=prod[1:])
                torch.mul(lam_c[0], entry_states[index], out=prod[0])
                prod.mul_(a_c[:n])
                grad_dt[start:stop] = torch.mul(prod, scan.A, out=h_c[:n]).sum(-1)
                grad_A += prod.mul_(scan.dt[start:stop].unsqueeze(-1)).sum((0, 1))

            grad_u = scan.dt * lam_b
            grad_dt += scan.u * lam_b
            if ctx.delta_softplus:
                grad_dt *= _softplus_grad(scan.dt_raw)
            grad_bias = grad_dt.sum((0, 1)).reshape(-1).to(delta_bias.dtype) if delta_bias is not None else None
            grad_u = _from_time_major(grad_u, u.shape, dtype)
            if D is not None:
                grad_u += D.to(dtype)[:, None] * grad_out
        return (
            grad_u.to(u.dtype),
            _from_time_major(grad_dt, delta.shape, delta.dtype),
            grad_A.reshape(A.shape).to(A.dtype),
            _from_time_major(grad_B, B.shape, B.dtype),
            _from_time_major(grad_C, C.shape, C.dtype),
            grad_D,
            grad_z,
            grad_bias,
            None,
            None,
        )


def _traced_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """The forward pass of :class:`SelectiveScanFn` out of place, for ``torch.jit.trace`` and the ONNX exporter.

    The same chunks and operations as the eager pass on new tensors, so the outputs are the eager ones; the chunk
    loop is TorchScript (:func:`_scan_chunks`), so a trace keeps it as a loop for any sequence length.

    Returns:
        ``(out, last_state)`` as :meth:`SelectiveScanFn.forward`.
    """
    groups = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    with _autocast_off(u.device):
        scan = _Scan(u, delta, A, B, C, delta_bias, delta_softplus, groups)
        y, state = _scripted_scan_chunks()(scan.dt, scan.dtu, scan.B, scan.C, scan.A, chunk_size)
        y = _from_time_major(y, u.shape, scan.dtype)
        if D is not None:
            y = y + D.to(scan.dtype)[:, None] * u.to(scan.dtype)
        out = y * F.silu(z.to(scan.dtype)) if z is not None else y
    return out.to(u.dtype), state.reshape(scan.batch, -1, scan.state)


def selective_scan_chunked(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked parallel selective scan with bounded memory (pure PyTorch, any device).

    Arguments and results as :func:`selective_scan_ref`, plus:

    Args:
        chunk_size: chunk length T, a power of two (default :data:`DEFAULT_CHUNK_SIZE`). The scan needs five
            ``(T, batch, D, N)`` buffers; a smaller T means more Python steps, a larger T more memory traffic.

    Returns:
        ``out`` ``(batch, D, L)`` in the dtype of ``u``, or ``(out, last_state)`` with ``last_state`` ``(batch, D, N)``
        in float32 (float64 for float64 inputs).
    """
    if chunk_size < 1 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a positive power of two, got {chunk_size}")
    scan = _traced_scan if torch.jit.is_tracing() else SelectiveScanFn.apply
    out, last_state = scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)
    return (out, last_state) if return_last_state else out


@functools.cache
def mamba_ssm_selective_scan() -> Callable[..., Any] | None:
    """Return ``mamba_ssm``'s CUDA ``selective_scan_fn`` when the package imports, else ``None`` (cached)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError):  # absent, or its CUDA extension does not load
        return None
    return selective_scan_fn


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Tensor | tuple[Tensor, Tensor]:
    """Selective scan on the fastest available path: the ``mamba_ssm`` kernel for CUDA tensors, else the chunked scan.

    Arguments and results as :func:`selective_scan_chunked` (``chunk_size`` is ignored by the CUDA kernel).
    """
    kernel = mamba_ssm_selective_scan() if u.is_cuda and not torch.jit.is_tracing() else None
    if kernel is not None:
        return kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return selective_scan_chunked(
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size=chunk_size
    )
