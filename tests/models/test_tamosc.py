"""TA-MoSC (UTANet, AAAI 2025): shapes, routing, batched dispatch, unused-expert policies and the BEU loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.models.skips import Routing, TaMoSC, balance_loss

UNET_CHANNELS = [8, 16, 32, 64]
"""The plain ``unet`` encoder widths [64, 128, 256, 512] at base width 8."""


def unet_features(batch: int = 3, size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, size // 2**i, size // 2**i, generator=generator) for i, c in enumerate(UNET_CHANNELS)]


def build(seed: int = 0, **kwargs: object) -> TaMoSC:
    torch.manual_seed(seed)
    options = {"fuse_channels": 16, "num_experts": 4, "top_k": 2, **kwargs}
    return TaMoSC(UNET_CHANNELS, **options)


def randomise_batchnorm(module: torch.nn.Module) -> None:
    """Give every BatchNorm non-trivial running statistics so that eval-mode outputs are not degenerate."""
    generator = torch.Generator().manual_seed(1)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)


def test_shapes_for_an_arbitrary_channel_list() -> None:
    features = unet_features()
    skips, loss = build().eval()(features)
    assert [s.shape for s in skips] == [f.shape for f in features]
    assert loss.ndim == 0 and torch.isfinite(loss)

    module = TaMoSC(UNET_CHANNELS, out_channels=[4, 4, 8, 8], fuse_channels=8, num_experts=3, reference_index=2)
    skips, _ = module(features)
    assert [tuple(s.shape) for s in skips] == [(3, 4, 32, 32), (3, 4, 16, 16), (3, 8, 8, 8), (3, 8, 4, 4)]
    assert module.fuse_features(features).shape == (3, 8, 8, 8)


def test_parameter_layout_matches_the_utanet_module() -> None:
    module = TaMoSC([64, 64, 128, 256])
    count = sum(p.numel() for p in module.parameters())
    experts = sum(p.numel() for p in module.experts.parameters())
    routers = sum(p.numel() for p in module.routers.parameters())
    assert (experts, routers, count - experts - routers) == (133_376, 1_024, 67_264)  # 0.134 M MoE, 0.067 M rest
    assert [tuple(r.shape) for r in module.routers] == [(64, 4)] * 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 5}, "top_k"),
        ({"unused_expert_policy": "random"}, "unused_expert_policy"),
        ({"reference_index": 4}, "reference_index"),
        ({"out_channels": [8, 8]}, "output skips"),
    ],
)
def test_rejects_bad_options(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TaMoSC(UNET_CHANNELS, **kwargs)


def test_rejects_wrong_features() -> None:
    module = build()
    features = unet_features()
    with pytest.raises(ValueError, match="expects 4 features"):
        module(features[:3])
    with pytest.raises(ValueError, match="channels"):
        module([features[1], features[1], features[2], features[3]])


def test_mixing_weights_are_a_softmax_of_the_top_k_probabilities() -> None:
    module = build(num_experts=4, top_k=2)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for router in module.routers:
            router.copy_(torch.randn(router.shape, generator=generator))
    fused = torch.rand(2, 16, 4, 4, generator=generator)
    routing = module.route(fused)

    for g, router in enumerate(module.routers):
        for b in range(2):
            pooled = [fused[b, c].mean().item() for c in range(16)]
            logits = [sum(pooled[c] * router[c, e].item() for c in range(16)) for e in range(4)]
            total = sum(math.exp(v) for v in logits)
            probs = [math.exp(v) / total for v in logits]
            top = sorted(range(4), key=lambda e: -probs[e])[:2]
            top_total = sum(math.exp(probs[e]) for e in top)
            weights = [math.exp(probs[e]) / top_total for e in top]
            assert routing.indices[g, b].tolist() == top
            torch.testing.assert_close(routing.probs[g, b], torch.tensor(probs), atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(routing.weights[g, b], torch.tensor(weights), atol=1e-6, rtol=1e-5)
    assert routing.weights.min() >= 1 / (1 + math.e) and routing.weights.max() <= 1 / (1 + math.exp(-1))


def naive_forward(module: TaMoSC, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-image, per-router reference of the eval-mode forward pass."""
    fused = module.fuse_features(features)
    routing = module.route(fused)
    skips = []
    for g, docker in enumerate(module.dockers):
        images = []
        for b in range(fused.shape[0]):
            mixture = torch.zeros_like(fused[b : b + 1])
            for j in range(module.top_k):
                expert = module.experts[int(routing.indices[g, b, j])]
                mixture = mixture + routing.weights[g, b, j] * expert(fused[b : b + 1])
            images.append(mixture)
        mapped = docker(torch.cat(images))
        skips.append(F.interpolate(mapped, size=features[g].shape[-2:], mode="bilinear", align_corners=False))
    return skips


def test_batched_dispatch_equals_a_per_image_loop_in_eval() -> None:
    module = build(num_experts=4, top_k=2, unused_expert_policy="none").eval()
    randomise_batchnorm(module)
    features = unet_features(batch=6, seed=2)
    with torch.no_grad():
        skips, _ = module(features)
        expected = naive_forward(module, features)
        selected = module.route(module.fuse_features(features)).indices
    assert len(set(selected.flatten().tolist())) > 2, "the check should exercise several experts"
    for actual, reference in zip(skips, expected, strict=True):
        torch.testing.assert_close(actual, reference, atol=1e-5, rtol=1e-5)


def test_batched_dispatch_equals_per_router_masking_in_training() -> None:
    """Training groups each expert's rows per router, so BatchNorm sees the same batches as the official loop."""
    module = build(num_experts=4, top_k=2, unused_expert_policy="none").train()
    fused = torch.rand(5, 16, 8, 8, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)
    indices = torch.stack([torch.randperm(4, generator=generator)[:2] for _ in range(4 * 5)]).view(4, 5, 2)
    weights = torch.rand(4, 5, 2, generator=generator).softmax(dim=-1)
    routing = Routing(probs=torch.full((4, 5, 4), 0.25), indices=indices, weights=weights)
    mixtures = module.mix(fused, routing)

    images = torch.arange(5).repeat_interleave(2)
    for g in range(4):
        rows = torch.zeros(10, *fused.shape[1:])
        for e, expert in enumerate(module.experts):
            selected = (indices[g].flatten() == e).nonzero().flatten()
            if selected.numel():
                rows[selected] = expert(fused[images[selected]])
        reference = (rows * weights[g].reshape(10, 1, 1, 1)).view(5, 2, *fused.shape[1:]).sum(dim=1)
        torch.testing.assert_close(mixtures[g], reference, atol=1e-5, rtol=1e-5)


def fixed_routing(batch: int) -> Routing:
    """One router; every image selects experts 0 and 1 of three, so expert 2 is unused."""
    indices = torch.tensor([[0, 1]] * batch).unsqueeze(0)
    weights = torch.tensor([[0.6, 0.4]] * batch).unsqueeze(0)
    return Routing(probs=torch.full((1, batch, 3), 1 / 3), indices=indices, weights=weights)


def test_official_policy_changes_exactly_one_image_in_training_only() -> None:
    batch, k = 4, 2
    module = build(num_experts=3, top_k=k, unused_expert_policy="none")
    fused = torch.rand(batch, 16, 8, 8, generator=torch.Generator().manual_seed(6))
    routing = fixed_routing(batch)

    module.train()
    (plain,) = module.mix(fused, routing)
    module.unused_expert_policy = "official"
    module.generator = torch.Generator().manual_seed(11)
    (touched,) = module.mix(fused, routing)
    row = int(torch.randint(0, batch, (1,), generator=torch.Generator().manual_seed(11)))
    changed = [b for b in range(batch) if not torch.equal(plain[b], touched[b])]
    assert changed == [row // k]

    module.eval()
    (plain_eval,) = module.mix(fused, routing)
    module.unused_expert_policy = "none"
    torch.testing.assert_close(module.mix(fused, routing)[0], plain_eval, atol=0, rtol=0)


def test_zero_touch_policy_keeps_outputs_and_gives_a_gradient() -> None:
    module = build(num_experts=3, top_k=2, unused_expert_policy="none").train()
    fused = torch.rand(4, 16, 8, 8, generator=torch.Generator().manual_seed(6))
    (plain,) = module.mix(fused, fixed_routing(4))
    module.unused_expert_policy = "zero_touch"
    (touched,) = module.mix(fused, fixed_routing(4))
    torch.testing.assert_close(touched, plain, atol=0, rtol=0)
    touched.sum().backward()
    assert all(p.grad is not None for p in module.experts[2].parameters())


@pytest.mark.parametrize("policy", ["official", "none"])
def test_gradients_reach_every_expert_only_with_the_official_policy(policy: str) -> None:
    module = build(num_experts=3, top_k=2, unused_expert_policy=policy).train()
    with torch.no_grad():
        for router in module.routers:
            router.copy_(torch.tensor([1.0, 0.5, -1.0]).expand(16, 3))
    features = [f.abs() for f in unet_features(batch=2)]
    fused = module.fuse_features(features)
    assert 2 not in module.route(fused).indices.flatten().tolist(), "expert 2 must be selected by no router"

    skips, loss = module(features)
    (sum(s.square().mean() for s in skips) + loss).backward()
    for e, expert in enumerate(module.experts):
        grads = [p.grad for p in expert.parameters()]
        if policy == "official" or e < 2:
            assert all(g is not None for g in grads), e
            assert any(g.abs().sum() > 0 for g in grads), e
        else:
            assert all(g is None for g in grads)


def test_balance_loss_matches_a_hand_computation() -> None:
    probs = torch.tensor(
        [
            [[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]],
            [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]],
        ]
    )
    usage = [[1.1, 0.4, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5]]
    expected = 0.0
    for u in usage:
        mean = sum(u) / 4
        variance = sum((x - mean) ** 2 for x in u) / 3
        expected += variance / (mean**2 + 1e-10)
    torch.testing.assert_close(balance_loss(probs), torch.tensor(expected), atol=1e-6, rtol=1e-5)

    one_hot = torch.zeros(4, 3, 4)
    one_hot[..., 0] = 1
    torch.testing.assert_close(balance_loss(one_hot), torch.tensor(16.0))
    assert balance_loss(torch.ones(4, 3, 1)).item() == 0.0


def test_forward_returns_the_weighted_balance_loss() -> None:
    module = build(balance_weight=0.25).eval()
    features = unet_features()
    with torch.no_grad():
        _, loss = module(features)
        probs = module.route(module.fuse_features(features)).probs
    torch.testing.assert_close(loss, 0.25 * balance_loss(probs))
    assert build().balance_weight == 0.01
