"""ReSeg alignment: resolution-matched pairs, the /3 normalisation, channel projections and the frozen teacher."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medseg.config import load_config
from medseg.engine import SegmentationTask
from medseg.errors import MedsegError
from medseg.models import SegmentationModel, create_model
from medseg.objectives import DiceCELoss, TermContext, build_term
from medseg.objectives.reconstruction import ReconstructionTerm, encode_label_map
from medseg.objectives.reseg import ReSegTerm, alignment_pairs, channel_group_average

TINY = ["model.params.base_channels=4", "data.in_channels=1", "data.num_classes=4", "data.image_size=32"]


pytestmark = pytest.mark.usefixtures("one_thread")


def unet(seed: int, **kwargs: object) -> SegmentationModel:
    torch.manual_seed(seed)
    return create_model("unet", in_channels=1, num_classes=4, base_channels=4, **kwargs)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(2, 1, 32, 32, generator=generator), "mask": torch.randint(0, 4, (2, 32, 32))}


def save_checkpoint(path: Path, overrides: list[str]) -> Path:
    config = load_config(None, [*TINY, *overrides])
    task = SegmentationTask(config)
    torch.save({"hyper_parameters": {"config": config.model_dump(mode="json")}, "state_dict": task.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("reseg") / "teacher.ckpt", ["train.task=reconstruction"])


def student_task(teacher: Path, params: str = "") -> SegmentationTask:
    terms = f"loss.terms=[{{name: reseg, weight: 0.035, params: {{teacher_checkpoint: {teacher}{params}}}}}]"
    config = load_config(None, [*TINY, terms])
    return SegmentationTask(config)


def step(task: SegmentationTask) -> torch.Tensor:
    data = batch()
    return task.objective(task.model.forward_features(data["image"]), data)[0]


def test_unet_pairs_follow_the_official_table() -> None:
    student = unet(0).forward_features(torch.randn(2, 1, 32, 32))
    teacher = unet(1).forward_features(torch.randn(2, 1, 32, 32))
    pairs = {pair.name: pair for pair in alignment_pairs(student, teacher)}
    assert list(pairs) == ["E1", "E2", "E3", "D1", "D2", "D3", "M"]
    for k in range(3):  # E_k: enc x4/x3/x2 <-> dec up1/up2/up3; D_k the reverse
        assert pairs[f"E{k + 1}"].student is student.encoder[3 - k]
        assert pairs[f"E{k + 1}"].teacher is teacher.decoder[k]
        assert pairs[f"D{k + 1}"].student is student.decoder[k]
        assert pairs[f"D{k + 1}"].teacher is teacher.encoder[3 - k]
    assert pairs["M"].student is student.decoder[0] and pairs["M"].teacher is teacher.decoder[0]
    bridge = alignment_pairs(student, teacher, bridge="bottleneck")[-1]
    assert bridge.student is student.bottleneck and bridge.teacher is teacher.bottleneck


def test_alignment_is_the_sum_of_seven_mses_over_three() -> None:
    teacher = unet(1)
    term = ReSegTerm(teacher)
    data = batch()
    student = unet(0).forward_features(data["image"])
    reference = teacher.eval().forward_features(encode_label_map(data["mask"], 1))
    expected = sum(F.mse_loss(p.student, p.teacher) for p in alignment_pairs(student, reference)) / 3
    assert term(student, data).item() == pytest.approx(expected.item(), rel=1e-5)


def test_channel_group_average() -> None:
    feature = torch.randn(2, 6, 3, 5)
    torch.testing.assert_close(channel_group_average(feature, 3), (feature[:, 0::2] + feature[:, 1::2]) / 2)
    uneven = channel_group_average(feature, 4)  # adaptive windows [0, 2), [1, 3), [3, 5), [4, 6)
    torch.testing.assert_close(uneven[:, 1], feature[:, 1:3].mean(1))
    assert channel_group_average(feature, 6) is feature


def test_mismatched_channels_use_the_channel_average() -> None:
    teacher = unet(1, bilinear=True)  # bilinear: x4 has 2x the channels of up1, as the official SelfReg U-Net
    term = ReSegTerm(teacher)
    data = batch()
    student = unet(0, bilinear=True).forward_features(data["image"])
    reference = teacher.eval().forward_features(encode_label_map(data["mask"], 1))
    pairs = alignment_pairs(student, reference)
    assert pairs[0].name == "E1" and pairs[0].student.shape[1] == 2 * pairs[0].teacher.shape[1]
    total = torch.zeros(())
    for pair in pairs:
        narrow = min(pair.student.shape[1], pair.teacher.shape[1])
        s, t = pair.student, pair.teacher
        s = (s[:, 0::2] + s[:, 1::2]) / 2 if s.shape[1] > narrow else s
        t = (t[:, 0::2] + t[:, 1::2]) / 2 if t.shape[1] > narrow else t
        total = total + F.mse_loss(s, t)
    assert term(student, data).item() == pytest.approx(total.item() / 3, rel=1e-5)


def test_learnable_projection_maps_student_to_teacher_channels() -> None:
    term = ReSegTerm(unet(1, bilinear=True), projection="conv", probe_size=32)
    shapes = {name: (conv.in_channels, conv.out_channels) for name, conv in term.projections.items()}
    assert shapes == {"E1": (32, 16), "E2": (16, 8), "E3": (8, 4), "D1": (16, 32), "D2": (8, 16), "D3": (4, 8)}
    data = batch()
    term(unet(0, bilinear=True).forward_features(data["image"]), data).backward()
    assert all(conv.weight.grad is not None for conv in term.projections.values())


def test_teacher_is_frozen_outside_the_optimiser_and_the_state_dict(teacher_checkpoint: Path) -> None:
    task = student_task(teacher_checkpoint)
    term = task.objective.terms["reseg"]
    assert isinstance(term, ReSegTerm)
    teacher = term.teacher.model
    assert all(not p.requires_grad for p in teacher.parameters())
    task.trainer = SimpleNamespace(estimated_stepping_batches=10)
    optimised = {id(p) for group in task.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in task.model.parameters()}
    assert not any("teacher" in key for key in task.state_dict())
    saved = torch.load(teacher_checkpoint, weights_only=True)["state_dict"]
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, saved[f"model.{key}"])
    task.train()
    step(task).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert task.model.head.weight.grad is not None


def test_teacher_batchnorm_mode(teacher_checkpoint: Path) -> None:
    for flag, training_mode in ((False, False), (True, True)):
        task = student_task(teacher_checkpoint, f", teacher_bn_train: {str(flag).lower()}")
        teacher = task.objective.terms["reseg"].teacher.model
        norms = [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)]
        task.train()
        assert {m.training for m in norms} == {training_mode}
        assert not any(m.training for m in teacher.modules() if not isinstance(m, nn.BatchNorm2d))
        before = norms[0].running_mean.clone()
        step(task)
        assert torch.equal(norms[0].running_mean, before) is not flag  # batch statistics update only in train mode
        task.eval()
        assert not any(m.training for m in norms)


def test_the_teacher_is_loss_teacher_checkpoint(teacher_checkpoint: Path) -> None:
    config = load_config(None, [*TINY, f"loss.teacher_checkpoint={teacher_checkpoint}", "loss.terms=[{name: reseg}]"])
    teacher = SegmentationTask(config).objective.terms["reseg"].teacher.model.state_dict()
    saved = torch.load(teacher_checkpoint, weights_only=True)["state_dict"]
    assert teacher.keys() == {key.removeprefix("model.") for key in saved}
    assert all(torch.equal(value, saved[f"model.{key}"]) for key, value in teacher.items())


def test_reseg_needs_a_reconstruction_teacher(tmp_path: Path) -> None:
    context = TermContext(binary=False, seg_loss=DiceCELoss(binary=False), seed=0, num_classes=4)
    with pytest.raises(MedsegError, match="teacher_checkpoint"):
        build_term("reseg", context, {})
    segmentation = save_checkpoint(tmp_path / "seg.ckpt", [])
    with pytest.raises(MedsegError, match=r"train\.task=segmentation"):
        build_term("reseg", context, {"teacher_checkpoint": str(segmentation)})


def test_reconstruction_loss_broadcasts_like_the_official_code() -> None:
    data = batch()
    output = SimpleNamespace(logits=torch.randn(2, 4, 32, 32))
    image = data["image"].expand(-1, 4, -1, -1)
    expected = 0.6 * F.mse_loss(output.logits, image) + 0.4 * F.l1_loss(output.logits, image)
    assert ReconstructionTerm("image", 4)(output, data).item() == pytest.approx(expected.item())
    rgb = {"image": torch.rand(2, 3, 32, 32), "mask": data["mask"]}  # 3 channels, 4 outputs: the channel mean
    grey = rgb["image"].mean(1, keepdim=True).expand(-1, 4, -1, -1)
    expected = 0.6 * F.mse_loss(output.logits, grey) + 0.4 * F.l1_loss(output.logits, grey)
    assert ReconstructionTerm("image", 4)(output, rgb).item() == pytest.approx(expected.item())
    onehot = F.one_hot(data["mask"], 4).permute(0, 3, 1, 2).float()
    expected = 0.6 * F.mse_loss(output.logits, onehot) + 0.4 * F.l1_loss(output.logits, onehot)
    assert ReconstructionTerm("mask", 4)(output, data).item() == pytest.approx(expected.item())
    encoded = encode_label_map(data["mask"], 3)
    assert encoded.shape == (2, 3, 32, 32) and torch.equal(encoded[:, 2], data["mask"].float())
