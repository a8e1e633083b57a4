"""The selective scan and TA-MoSC while traced for export: the eager outputs, with a free batch size."""

from __future__ import annotations

import warnings

import pytest
import torch

from medseg.models.layers.selective_scan import SelectiveScanFn, _traced_scan, selective_scan_chunked
from medseg.models.skips.tamosc import TaMoSC


def scan_inputs(batch: int, dim: int, length: int, state: int, groups: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    shape = (batch, state, length) if groups == 1 else (batch, groups, state, length)
    return {
        "u": torch.randn(batch, dim, length),
        "delta": torch.randn(batch, dim, length),
        "A": -torch.rand(dim, state) * 2,
        "B": torch.randn(shape),
        "C": torch.randn(shape),
        "D": torch.randn(dim),
        "z": torch.randn(batch, dim, length),
        "delta_bias": torch.randn(dim),
    }


@pytest.mark.parametrize(
    ("length", "groups", "chunk"),
    [(300, 1, 128), (64, 4, 16), (5, 2, 4), (7, 1, 128)],
    ids=["3-chunks-padded", "grouped", "short-padded", "one-padded-chunk"],
)
@pytest.mark.parametrize("gate", [True, False], ids=["gate", "no-gate"])
def test_traced_scan_is_the_eager_scan_bit_for_bit(length: int, groups: int, chunk: int, gate: bool) -> None:
    x = scan_inputs(2, 8, length, 4, groups)
    args = (x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["z"] if gate else None, x["delta_bias"], True, chunk)
    out, last = SelectiveScanFn.apply(*args)
    traced_out, traced_last = _traced_scan(*args)
    assert torch.equal(out, traced_out) and torch.equal(last, traced_last)


def test_a_scan_traced_at_one_size_runs_other_batches_and_lengths() -> None:
    x = scan_inputs(3, 8, 70, 4, 2)
    A, D, bias = x["A"], x["D"], x["delta_bias"]

    def scan(u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        out = selective_scan_chunked(u, delta, A, B, C, D, None, bias, True, chunk_size=16)
        assert isinstance(out, torch.Tensor)
        return out

    inputs = (x["u"], x["delta"], x["B"], x["C"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(scan, tuple(t[:1, ..., :20] for t in inputs))  # one chunk and a padded one
    assert torch.equal(traced(*inputs), scan(*inputs))  # batch 3, five chunks, the last padded


def test_tamosc_dense_dispatch_of_tracing_mixes_as_the_eager_one() -> None:
    torch.manual_seed(0)
    module = TaMoSC([8, 16, 32], fuse_channels=16, num_experts=4, top_k=2).eval()
    features = [torch.randn(5, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32])]
    with torch.no_grad():
        fused = module.fuse_features(features)
        routing = module.route(fused)
        eager, dense = module.mix(fused, routing), module._mix_dense(fused, routing)
    for a, b in zip(eager, dense, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
