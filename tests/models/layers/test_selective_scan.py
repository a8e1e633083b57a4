"""Selective scan: the chunked scan (values and hand-written gradients) against the float64 sequential reference,
gradcheck, long-sequence stability, autocast, bounded saved memory and the mamba_ssm kernel when available."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medseg.models.layers.selective_scan import (
    SelectiveScanFn,
    mamba_ssm_selective_scan,
    selective_scan,
    selective_scan_chunked,
    selective_scan_ref,
)

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
OPTIONS = ("D", "z", "delta_bias", "delta_softplus", "return_last_state")


def make_inputs(
    length: int,
    groups: int | None,
    batch: int = 2,
    dim: int = 6,
    state: int = 16,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random inputs with realistic signs: Δ > 0 (before an optional softplus), A < 0."""
    g = torch.Generator().manual_seed(seed)
    bc_shape = (batch, state, length) if groups is None else (batch, groups, state, length)
    tensors = {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.rand(batch, dim, length, generator=g) * 0.5,
        "A": -(torch.rand(dim, state, generator=g) * 2 + 0.1),
        "B": torch.randn(*bc_shape, generator=g),
        "C": torch.randn(*bc_shape, generator=g),
        "D": torch.randn(dim, generator=g),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": torch.rand(dim, generator=g) * 0.3,
    }
    return {k: v.to(dtype).requires_grad_() for k, v in tensors.items()}


def run(fn, inputs: dict[str, torch.Tensor], flags: dict[str, bool], **kwargs):
    """Call ``fn`` with the optional inputs switched by ``flags``; return the outputs and a scalar loss."""
    args = [inputs[k] for k in NAMES[:5]]
    optional = {k: (inputs[k] if flags[k] else None) for k in ("D", "z", "delta_bias")}
    result = fn(
        *args,
        **optional,
        delta_softplus=flags["delta_softplus"],
        return_last_state=flags["return_last_state"],
        **kwargs,
    )
    outputs = result if isinstance(result, tuple) else (result,)
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device)).sum() for o in outputs)
    return outputs, loss


def compare(length: int, groups: int | None, chunk_size: int, flags: dict[str, bool]) -> None:
    inputs = make_inputs(length, groups)
    ref_out, ref_loss = run(selective_scan_ref, inputs, flags)
    out, loss = run(selective_scan_chunked, inputs, flags, chunk_size=chunk_size)
    assert len(out) == len(ref_out) == (2 if flags["return_last_state"] else 1)
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    ref_grads = torch.autograd.grad(ref_loss, list(inputs.values()), allow_unused=True)
    grads = torch.autograd.grad(loss, list(inputs.values()), allow_unused=True)
    for name, grad, ref_grad in zip(NAMES, grads, ref_grads, strict=True):
        if ref_grad is None:
            assert grad is None, name
        else:
            torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


ALL_FLAGS = [dict(zip(OPTIONS, bits, strict=True)) for bits in itertools.product([False, True], repeat=len(OPTIONS))]


def flag_id(flags: dict[str, bool]) -> str:
    return "+".join(k for k, on in flags.items() if on) or "plain"


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=flag_id)
@pytest.mark.parametrize("groups", [None, 3], ids=["shared", "grouped"])
def test_short_sequences_every_option(flags: dict[str, bool], groups: int | None) -> None:
    for length, chunk_size in [(1, 1), (1, 4), (7, 1), (7, 2), (7, 4), (7, 8), (7, 64)]:
        compare(length, groups, chunk_size, flags)


SINGLE_FLAGS = [
    dict.fromkeys(OPTIONS, False),
    dict.fromkeys(OPTIONS, True),
    *({k: k == on for k in OPTIONS} for on in OPTIONS),
]


@pytest.mark.parametrize("flags", SINGLE_FLAGS, ids=flag_id)
@pytest.mark.parametrize("groups", [None, 2], ids=["shared", "grouped"])
@pytest.mark.parametrize("chunk_size", [4, 64], ids=["T4-divides", "T64-does-not-divide"])
def test_length_300(flags: dict[str, bool], groups: int | None, chunk_size: int) -> None:
    compare(300, groups, chunk_size, flags)


@pytest.mark.parametrize("groups", [None, 2], ids=["shared", "grouped"])
def test_gradcheck(groups: int | None) -> None:
    inputs = make_inputs(5, groups, batch=1, dim=2, state=3)
    tensors = tuple(inputs[k] for k in NAMES)

    def chunked(*t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return selective_scan_chunked(*t, delta_softplus=True, return_last_state=True, chunk_size=2)

    def reference(*t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return selective_scan_ref(*t, delta_softplus=True, return_last_state=True)

    assert torch.autograd.gradcheck(chunked, tensors)
    assert torch.autograd.gradcheck(reference, tensors)


def realistic_inputs(batch: int, dim: int, length: int, dt_max: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mamba-like inputs: Δ-bias = softplus⁻¹(dt), dt log-uniform in [1e-3, dt_max]; A = -(1..16); D = 1."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(dt_max) - math.log(1e-3)) + math.log(1e-3))
    return {
        "u": torch.randn(batch, dim, length, generator=g),
        "delta": torch.randn(batch, dim, length, generator=g) * 0.5,
        "A": -torch.arange(1, 17, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, 16, length, generator=g),
        "C": torch.randn(batch, 16, length, generator=g),
        "D": torch.ones(dim),
        "z": torch.randn(batch, dim, length, generator=g),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }


@pytest.mark.parametrize("dt_max", [0.1, 10.0], ids=["mamba-init", "large-steps"])
def test_stable_at_length_3136(dt_max: float) -> None:
    """L = 3136 (a 56x56 map) in float32. With dt up to 10, Σ Δ|A| over one chunk reaches thousands, far past
    where exp(Σ Δ|A|) overflows float32; the decay-only prefix scan stays finite and matches the reference."""
    inputs = realistic_inputs(batch=2, dim=8, length=3136, dt_max=dt_max)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out, last = selective_scan_chunked(**leaves, delta_softplus=True, return_last_state=True)
    assert torch.isfinite(out).all() and torch.isfinite(last).all()
    (out.square().mean() + last.square().mean()).backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves.values())

    channels = [0, 5]  # check a few channels against the float64 sequential loop
    sub = {k: v.double() for k, v in inputs.items()}
    for key in ("u", "delta", "z"):
        sub[key] = sub[key][:, channels]
    for key in ("A", "D", "delta_bias"):
        sub[key] = sub[key][channels]
    with torch.no_grad():
        ref_out, ref_last = selective_scan_ref(**sub, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out[:, channels].double(), ref_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last[:, channels].double(), ref_last, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_scans_in_float32() -> None:
    inputs = realistic_inputs(batch=2, dim=4, length=200, dt_max=0.1)
    expected = selective_scan_chunked(**inputs, delta_softplus=True)
    half = {k: v.bfloat16().requires_grad_() for k, v in inputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, last = selective_scan_chunked(**half, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    rebuilt = selective_scan_chunked(**{k: v.detach().float() for k, v in half.items()}, delta_softplus=True)
    torch.testing.assert_close(out.float(), rebuilt.bfloat16().float())  # float32 scan, rounded once at the end
    assert (out.float() - expected).abs().max() < 0.1 * expected.abs().max()
    out.float().sum().backward()
    assert all(t.grad is not None and t.grad.dtype == torch.bfloat16 for t in half.values())


def test_backward_keeps_only_chunk_boundary_states() -> None:
    batch, dim, length, state, chunk = 2, 8, 512, 16, 64
    inputs = make_inputs(length, None, batch=batch, dim=dim, state=state, dtype=torch.float32)
    out = selective_scan_chunked(**inputs, delta_softplus=True, chunk_size=chunk)
    assert type(out.grad_fn).__name__ == f"{SelectiveScanFn.__name__}Backward"
    saved = [t for t in out.grad_fn.saved_tensors if t is not None]
    inputs_and_boundaries = max(batch * dim * length, batch * state * length, (length // chunk) * batch * dim * state)
    assert max(t.numel() for t in saved) <= inputs_and_boundaries < batch * dim * length * state
    entry_states = [t for t in saved if t.ndim == 5]
    assert len(entry_states) == 1 and entry_states[0].shape == (length // chunk, batch, 1, dim, state)


def test_dispatcher_uses_chunked_scan_on_cpu() -> None:
    inputs = make_inputs(37, 2, dtype=torch.float32)
    expected = selective_scan_chunked(**inputs, delta_softplus=True, chunk_size=16)
    torch.testing.assert_close(selective_scan(**inputs, delta_softplus=True, chunk_size=16), expected)


def test_rejects_bad_arguments() -> None:
    inputs = make_inputs(8, None, dtype=torch.float32)
    with pytest.raises(ValueError, match="power of two"):
        selective_scan_chunked(**inputs, chunk_size=48)
    with pytest.raises(ValueError, match="B and C"):
        selective_scan_chunked(**{**inputs, "B": inputs["B"][:, :-1], "C": inputs["C"][:, :-1]})
    with pytest.raises(ValueError, match="G dividing"):
        bad = torch.zeros(2, 4, 16, 8)
        selective_scan_chunked(**{**inputs, "B": bad, "C": bad})


@pytest.mark.skipif(
    not torch.cuda.is_available() or mamba_ssm_selective_scan() is None,
    reason="needs a CUDA device and the mamba_ssm package (its selective_scan_fn kernel)",
)
@pytest.mark.parametrize("groups", [None, 4], ids=["shared", "grouped"])
def test_matches_mamba_ssm_kernel(groups: int | None) -> None:
    kernel = mamba_ssm_selective_scan()
    inputs = {k: v.detach().float().cuda().requires_grad_() for k, v in make_inputs(300, groups, dim=8).items()}
    flags = dict.fromkeys(OPTIONS, True)
    ref_out, ref_loss = run(kernel, inputs, flags)
    out, loss = run(selective_scan_chunked, inputs, flags)
    for a, b in zip(out, ref_out, strict=True):
        torch.testing.assert_close(a, b, rtol=6e-4, atol=2e-3)
    for name, grad, ref_grad in zip(
        NAMES,
        torch.autograd.grad(loss, list(inputs.values())),
        torch.autograd.grad(ref_loss, list(inputs.values())),
        strict=True,
    ):
        torch.testing.assert_close(grad, ref_grad, rtol=6e-4, atol=2e-3, msg=lambda m, n=name: f"{n}: {m}")
