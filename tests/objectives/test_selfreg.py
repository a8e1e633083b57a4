"""SelfReg (IFD + SCR) against hand-computed values, its feature selection, reproducibility and λ modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import MedsegError
from medseg.models import SegOutput, create_model
from medseg.objectives import DiceCELoss, TermContext, build_term
from medseg.objectives.selfreg import (
    SelfRegTerm,
    feature_groups,
    intra_feature_distillation,
    semantic_consistency,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def context(seed: int = 0) -> TermContext:
    return TermContext(binary=False, seg_loss=DiceCELoss(binary=False), seed=seed, num_classes=4)


def unet_output(seed: int = 0) -> SegOutput:
    torch.manual_seed(seed)
    model = create_model("unet", in_channels=1, num_classes=4, base_channels=4)
    return model.forward_features(torch.randn(2, 1, 32, 32))


def test_ifd_hand_computed() -> None:
    # channels over a 1x2 map; scores = mean of the L2-normalised channel: 0.7, 0.5, 0.7071, 0.2236
    feature = torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 1.0], [-1.0, 2.0]]).view(1, 4, 1, 2)
    # sorted: c2, c0 | c1, c3 -> (c2 - c1)^2 = [0, 1], (c0 - c3)^2 = [16, 4]; mean of 4 values = 21 / 4
    assert intra_feature_distillation(feature).item() == pytest.approx(5.25)


def test_ifd_odd_and_single_channel() -> None:
    feature = torch.tensor([[3.0, 4.0], [1.0, 0.0], [1.0, 1.0], [-1.0, 2.0], [0.0, 1.0]]).view(1, 5, 1, 2)
    # scores: 0.7, 0.5, 0.7071, 0.2236, 0.5 -> top c2, c0 against c1 and c4; the lowest (c3) is left out
    ranked = feature[:, torch.sort(F.normalize(feature, dim=(2, 3)).mean((0, 2, 3)), descending=True).indices]
    expected = F.mse_loss(ranked[:, :2], ranked[:, 2:4])
    assert intra_feature_distillation(feature).item() == pytest.approx(expected.item())
    assert intra_feature_distillation(torch.randn(2, 1, 4, 4)).item() == 0


def test_scr_hand_computed_pooling() -> None:
    feature = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    final = torch.tensor([[0.0, 0, 1, 3], [0, 0, 2, 2], [2, 2, 4, 4], [2, 2, 4, 4]]).view(1, 1, 4, 4)
    # final pooled to 2x2: [[0, 2], [2, 4]] -> squared differences [1, 0, 1, 0]
    generator = torch.Generator().manual_seed(0)
    assert semantic_consistency(feature, final, generator).item() == pytest.approx(0.5)
    # a student larger than the final feature is pooled instead
    assert semantic_consistency(final, feature, generator).item() == pytest.approx(0.5)


def test_scr_pools_non_square_maps_to_their_own_size() -> None:
    feature = torch.randn(2, 1, 2, 3)
    final = torch.randn(2, 1, 4, 6)
    expected = F.mse_loss(feature, F.avg_pool2d(final, 2))
    value = semantic_consistency(feature, final, torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


def test_scr_draws_channels_from_the_generator_and_detaches_the_teacher() -> None:
    feature = torch.tensor([0.0, 1.0]).view(1, 2, 1, 1).requires_grad_()
    final = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).requires_grad_()
    value = semantic_consistency(feature, final, torch.Generator().manual_seed(7))
    replica = torch.Generator().manual_seed(7)
    student = torch.randperm(2, generator=replica)[:2].tolist()
    teacher = torch.randperm(3, generator=replica)[:2].tolist()
    assert sorted(student) == [0, 1] and len(set(teacher)) == 2  # without replacement
    pairs = zip(student, teacher, strict=True)
    expected = sum((feature[0, s, 0, 0].item() - final[0, t, 0, 0].item()) ** 2 for s, t in pairs) / 2
    assert value.item() == pytest.approx(expected)
    value.backward()
    assert feature.grad is not None and final.grad is None


def test_unet_features_are_the_official_lists() -> None:
    output = unet_output()
    encoder, decoder = feature_groups(output)
    assert all(f is g for f, g in zip(encoder, [*output.encoder[1:], output.bottleneck], strict=True))
    assert all(f is g for f, g in zip(decoder, output.decoder[:3], strict=True))
    full_encoder, full_decoder = feature_groups(output, full_resolution=True)
    assert len(full_encoder) == 5 and len(full_decoder) == 3  # final itself is never distilled


def test_term_is_the_official_unet_formula_with_two_lambdas() -> None:
    output = unet_output()
    encoder, decoder = feature_groups(output)
    replica = torch.Generator().manual_seed(3)
    ifd = (
        sum(intra_feature_distillation(f) for f in encoder) / 4
        + sum(intra_feature_distillation(f) for f in decoder) / 3
    )
    scr = sum(semantic_consistency(f, output.final, replica) for f in [*decoder, *encoder]) / 7
    term = SelfRegTerm(lambda_ifd=0.02, lambda_scr=0.03, seed=3)
    value = term(output, {})
    assert value.item() == pytest.approx((0.02 * ifd + 0.03 * scr).item(), rel=1e-5)


def test_same_seed_same_loss_and_the_draws_advance() -> None:
    output = unet_output()
    first, second = build_term("selfreg", context(11), {}), build_term("selfreg", context(11), {})
    values = [first(output, {}).item() for _ in range(3)]
    assert values == [second(output, {}).item() for _ in range(3)]
    assert len(set(values)) > 1  # fresh channel draws every call, as the official code
    other = build_term("selfreg", context(12), {})
    assert [other(output, {}).item() for _ in range(3)] != values


def test_single_lambda_puts_one_weight_on_the_sum() -> None:
    output = unet_output()
    single = build_term("selfreg", context(), {"single_lambda": 0.1})
    ifd, scr = SelfRegTerm(seed=0).components(output)
    assert single(output, {}).item() == pytest.approx((0.1 * (ifd + scr)).item(), rel=1e-5)
    default = build_term("selfreg", context(), {})
    assert isinstance(default, SelfRegTerm) and default.lambda_ifd == default.lambda_scr == 0.015
    with pytest.raises(MedsegError, match="single_lambda"):
        build_term("selfreg", context(), {"single_lambda": 0.1, "lambda_ifd": 0.01})


def test_gradients_reach_the_features() -> None:
    torch.manual_seed(0)
    model = create_model("unet", in_channels=1, num_classes=2, base_channels=4)
    SelfRegTerm()(model.forward_features(torch.randn(2, 1, 32, 32)), {}).backward()
    assert model.down4[1][0].weight.grad is not None  # the bottleneck stage
    assert model.head.weight.grad is None  # SelfReg never touches the head


def _reference_intra(feature: torch.Tensor) -> float:
    """IFD written out element by element from docs/methods/selfreg_unet.md#losses (a second, loop-based reading of the
    official code)."""
    batch, channels = feature.shape[:2]
    values = feature.double()
    scores = []
    for c in range(channels):
        per_sample = [values[b, c] / values[b, c].pow(2).sum().sqrt().clamp_min(1e-12) for b in range(batch)]
        scores.append(torch.stack(per_sample).mean().item())
    order = sorted(range(channels), key=lambda c: -scores[c])
    half = channels // 2
    squared = [(values[:, order[i]] - values[:, order[half + i]]).pow(2).mean().item() for i in range(half)]
    return sum(squared) / half


def _reference_inter(feature: torch.Tensor, final: torch.Tensor, student: list[int], teacher: list[int]) -> float:
    """SCR as coded: pool the larger map to the smaller height (square), then MSE of the paired channels."""
    if feature.shape[-1] > final.shape[-1]:
        feature = F.adaptive_avg_pool2d(feature, (final.shape[-2], final.shape[-2]))
    elif feature.shape[-1] < final.shape[-1]:
        final = F.adaptive_avg_pool2d(final, (feature.shape[-2], feature.shape[-2]))
    pairs = [
        (feature[:, s].double() - final[:, t].double()).pow(2).mean().item()
        for s, t in zip(student, teacher, strict=True)
    ]
    return sum(pairs) / len(pairs)


def test_term_matches_a_loop_transcription_of_the_official_unet_kd_loss() -> None:
    torch.manual_seed(5)
    model = create_model("unet", in_channels=1, num_classes=4, base_channels=8, bilinear=True)
    output = model.forward_features(torch.rand(3, 1, 48, 48))
    encoder = [*output.encoder[1:], output.bottleneck]  # x2, x3, x4, x5 of the official UNet_hd
    decoder = list(output.decoder[:3])  # up1, up2, up3; up4 is the final map
    final = output.final
    replica = torch.Generator().manual_seed(9)
    inter = []
    for feature in [*decoder, *encoder]:
        count = min(feature.shape[1], final.shape[1])
        student = torch.randperm(feature.shape[1], generator=replica)[:count].tolist()
        teacher = torch.randperm(final.shape[1], generator=replica)[:count].tolist()
        inter.append(_reference_inter(feature, final, student, teacher))
    official = 0.1 * (
        sum(_reference_intra(f) for f in encoder) / 4 + sum(_reference_intra(f) for f in decoder) / 3 + sum(inter) / 7
    )
    term = build_term("selfreg", context(9), {"single_lambda": 0.1})
    assert term(output, {}).item() == pytest.approx(official, rel=1e-5)


def test_swin_term_is_the_official_first_and_last_block_formula() -> None:
    """docs/methods/selfreg_unet.md#losses, Swin-UNet: (1/4)Σ intra(E_last) + (1/4)Σ intra(E_first) + (1/3)Σ
    intra(D_first) + (1/3)Σ intra(D_last) + (1/7)(Σ inter(D_last) + Σ inter(E_last)) + (1/7)(Σ inter(D_first) + Σ
    inter(E_first))."""
    torch.manual_seed(2)
    tiny = {"img_size": 64, "embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4), "window_size": 4}
    output = create_model("swin_unet", in_channels=3, num_classes=4, **tiny).forward_features(torch.randn(2, 3, 64, 64))
    final = output.final
    replica = torch.Generator().manual_seed(4)

    def inter_sum(features: list[torch.Tensor]) -> float:
        total = 0.0
        for feature in features:
            count = min(feature.shape[1], final.shape[1])
            student = torch.randperm(feature.shape[1], generator=replica)[:count].tolist()
            teacher = torch.randperm(final.shape[1], generator=replica)[:count].tolist()
            total += _reference_inter(feature, final, student, teacher)
        return total

    enc_last = [blocks[-1] for blocks in output.encoder_blocks]
    enc_first = [blocks[0] for blocks in output.encoder_blocks]
    dec_last = [blocks[-1] for blocks in output.decoder_blocks]
    dec_first = [blocks[0] for blocks in output.decoder_blocks]
    intra = (
        sum(map(_reference_intra, enc_last)) / 4
        + sum(map(_reference_intra, dec_last)) / 3
        + sum(map(_reference_intra, enc_first)) / 4
        + sum(map(_reference_intra, dec_first)) / 3
    )
    inter = inter_sum([*dec_last, *enc_last]) / 7 + inter_sum([*dec_first, *enc_first]) / 7
    term = build_term("selfreg", context(4), {"lambda_ifd": 0.02, "lambda_scr": 0.01})
    assert term(output, {}).item() == pytest.approx(0.02 * intra + 0.01 * inter, rel=1e-5)
    assert output.encoder_blocks[3][-1] is not output.bottleneck  # the bottleneck stage is used before its norm
