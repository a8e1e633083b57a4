"""The Lightning module that trains any registered model with any objective."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DistributedSampler
from torchmetrics import MeanMetric

from medseg.checkpoints import build_model
from medseg.config import ExperimentConfig, config_from_dict
from medseg.data.augment import BatchAugment, batch_generator
from medseg.engine.schedules import lr_multiplier
from medseg.errors import MedsegError
from medseg.objectives import Objective
from medseg.tasks import build_task

__all__ = ["FINITE_CHECK_EVERY", "NonFiniteError", "SegmentationTask", "batch_dice", "build_model"]

FINITE_CHECK_EVERY = 16
"""Training steps between two reads of the loss-finiteness flags on an accelerator (every step on the CPU)."""


class NonFiniteError(MedsegError):
    """Training produced a non-finite loss (or weights): the run stops and keeps its last good checkpoint."""


def batch_dice(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Hard Dice per image, averaged over foreground classes; an image where both are empty scores 1.

    Args:
        logits: ``(B, K, H, W)``; K = 1 means a sigmoid task thresholded at ``threshold``.
        target: ``(B, H, W)`` class indices.
        threshold: probability threshold of a binary task.

    Returns:
        ``(B,)`` Dice values.
    """
    if logits.shape[1] == 1:
        pred = (torch.sigmoid(logits[:, 0].float()) > threshold).unsqueeze(1)
        truth = (target > 0).unsqueeze(1)
    else:
        classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, 1, 1)
        pred = logits.argmax(1, keepdim=True) == classes
        truth = target.unsqueeze(1) == classes
    intersection = (pred & truth).flatten(2).sum(-1).float()
    total = pred.flatten(2).sum(-1).float() + truth.flatten(2).sum(-1).float()
    dice = torch.where(total > 0, 2 * intersection / total.clamp_min(1), torch.ones_like(total))
    return dice.mean(1)


def _select(value: Any, mask: torch.Tensor, keep: list[bool]) -> Any:
    """The kept items of one batch entry: a tensor or a list of per-image values (others pass unchanged)."""
    if torch.is_tensor(value):
        return value[mask]
    if isinstance(value, list | tuple):
        return [item for item, kept in zip(value, keep, strict=True) if kept]
    return value


class SegmentationTask(pl.LightningModule):
    """Trains ``config.model`` with the configured objective, optimiser and schedule.

    The resolved configuration is stored in the checkpoint as a plain mapping (``hyper_parameters["config"]``), so
    a checkpoint alone rebuilds the model and its preprocessing.

    What the run trains is its ``train.task`` (:attr:`task`, a :class:`~medseg.tasks.TrainingTask`): the task
    gives the model's input, the default objective and whether the intensity augmentations apply; validation logs
    ``val/loss``, and ``val/dice`` for a task that segments.

    Training batches are augmented on the model's device once they are there (:meth:`on_after_batch_transfer`,
    :class:`~medseg.data.augment.BatchAugment`); validation, test and prediction batches are not.

    A non-finite loss (or term) stops training with a :class:`NonFiniteError` before its optimiser step, and a
    checkpoint whose weights are not finite is never written, so ``last.ckpt`` stays the last good epoch. Epoch
    metrics are reduced over the processes of a multi-device run, and validation leaves out the images that
    Lightning's ``DistributedSampler`` repeats to give every process as many, so ``val/dice`` is the mean over the
    validation set on any number of devices.

    Args:
        config: the experiment configuration; a plain mapping (a checkpoint's ``hyper_parameters["config"]``, as
            Lightning's ``load_from_checkpoint`` passes it) is validated first.
        objective: the training objective; when ``None``, the task's (:meth:`medseg.tasks.TrainingTask.objective`).
    """

    def __init__(self, config: ExperimentConfig | Mapping[str, Any], objective: Objective | None = None) -> None:
        super().__init__()
        self.config = config if isinstance(config, ExperimentConfig) else config_from_dict(dict(config))
        self.save_hyperparameters({"config": self.config.model_dump(mode="json")})
        self.task = build_task(self.config)
        self.model = build_model(self.config)
        self.objective = objective or self.task.objective()
        self.augment = BatchAugment(self.config.data, intensity=self.task.intensity_augment)
        self._last_finite: tuple[int, dict[str, torch.Tensor]] | None = None
        self._pending_finite: list[tuple[int, dict[str, torch.Tensor], torch.Tensor]] = []
        # validation means over images, reduced over processes as float sums and counts (not in the state dict)
        self.val_loss = MeanMetric()
        self.val_dice = MeanMetric()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the model's logits."""
        return self.model(images)

    def model_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """What the model is fed, as the task says (:meth:`medseg.tasks.TrainingTask.model_input`).

        Args:
            batch: the batch (``image``, ``mask``).

        Returns:
            ``(B, in_channels, H, W)`` input.
        """
        return self.task.model_input(batch)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment a training batch on its device; other batches pass unchanged.

        The random choices come from :func:`~medseg.data.augment.batch_generator` with ``train.seed``, the epoch,
        the batch's index in the epoch and the process rank, so a seeded run repeats its augmentations.

        Args:
            batch: the batch on the model's device (``image``, ``mask``, ``case_id``).
            dataloader_idx: index of the data loader.

        Returns:
            The batch, with augmented ``image`` and ``mask`` while training.
        """
        trainer = self.trainer
        if not trainer.training or not self.augment.enabled:
            return batch
        index = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # batches before this one, kept on resume
        generator = batch_generator(self.config.train.seed, trainer.current_epoch, index, trainer.global_rank)
        image, mask = self.augment(batch["image"], batch["mask"], generator)
        return {**batch, "image": image, "mask": mask}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        output = self.model.forward_features(self.model_input(batch))
        total, parts = self.objective(output, batch)
        self._check_finite({"loss": total, **parts})
        size = batch["image"].shape[0]
        self.log("train/loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return total

    def _check_finite(self, values: dict[str, torch.Tensor]) -> None:
        """Queue this step's finiteness check of the loss and its terms; run the queue when it is due.

        On the CPU every step is checked at once. On an accelerator the flags stay on the device and are read
        every :data:`FINITE_CHECK_EVERY` steps and at the end of each training epoch, so steps do not wait for the
        device to finish; a checkpoint is never written with non-finite weights in any case
        (:meth:`on_save_checkpoint`).
        """
        detached = {name: value.detach() for name, value in values.items()}
        flag = torch.stack([torch.isfinite(value.float()).all() for value in detached.values()]).all()
        self._pending_finite.append((self.trainer.global_step + 1, detached, flag))
        if self.device.type == "cpu" or len(self._pending_finite) >= FINITE_CHECK_EVERY:
            self._read_finite_flags()

    def on_train_epoch_end(self) -> None:
        self._read_finite_flags()

    def _read_finite_flags(self) -> None:
        """Raise :class:`NonFiniteError` when a queued step was not finite on any process; else remember the last.

        One device-to-host transfer per call (and one all-reduce of a flag in a multi-device run, so every process
        stops at the same step).
        """
        pending, self._pending_finite = self._pending_finite, []
        if not pending:
            return
        flags = torch.stack([flag for _, _, flag in pending]).tolist()
        local = all(flags)
        if self.trainer.strategy.reduce_boolean_decision(local, all=True):
            self._last_finite = pending[-1][:2]
            return
        trainer = self.trainer
        first_bad = flags.index(False) if not local else len(flags) - 1
        if first_bad > 0:
            self._last_finite = pending[first_bad - 1][:2]
        step, detached, _ = pending[first_bad]
        where = f"epoch {trainer.current_epoch + 1}, step {step}"
        if local:
            bad = "on another process"
        else:
            terms = [torch.isfinite(value.float()).all().item() for value in detached.values()]
            named = zip(detached.items(), terms, strict=True)
            bad = ", ".join(f"{name} is {value.float().item():g}" for (name, value), finite in named if not finite)
        previous = "no finite step before it"
        if self._last_finite is not None:
            last_step, last = self._last_finite
            previous = f"last finite values (step {last_step}): " + ", ".join(
                f"{name} {value.float().item():.4g}" for name, value in last.items()
            )
        precision = str(trainer.precision)
        hints = [f"lower optim.lr (now {self.config.optim.lr:g})"]
        if self.config.optim.grad_clip is None:
            hints.append("clip the gradients (optim.grad_clip=1.0)")
        if precision.startswith("16"):
            hints.append("train in train.precision=bf16-mixed or 32 instead of 16-mixed")
        saved = any(getattr(callback, "best_model_path", "") for callback in trainer.checkpoint_callbacks)
        kept = "checkpoints/last.ckpt, written before it, is kept" if saved else "no checkpoint had been written yet"
        raise NonFiniteError(f"non-finite training loss at {where}: {bad}; {previous}; {', '.join(hints)}; {kept}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to write a checkpoint whose weights are not finite (the previous file stays)."""
        floats = {name: value for name, value in checkpoint["state_dict"].items() if torch.is_floating_point(value)}
        if not floats or bool(torch.stack([torch.isfinite(value).all() for value in floats.values()]).all()):
            return
        bad = [name for name, value in floats.items() if not bool(torch.isfinite(value).all())]
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteError(
            f"weights became non-finite by epoch {self.trainer.current_epoch + 1}, step {self.trainer.global_step} "
            f"({', '.join(bad[:3])}{more}); the checkpoint was not written; lower optim.lr or clip the gradients "
            "(optim.grad_clip=1.0)"
        )

    def _distinct(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """The batch without the images a padding ``DistributedSampler`` repeats (``None``: nothing left).

        Lightning's ``DistributedSampler`` gives every process ``ceil(N / world)`` images by appending the first
        images again; position ``j`` of process ``r`` is image position ``j * world + r`` of the padded order, a
        repeat when that is ``N`` or more. Validation leaves those out, so its means are over each image once.
        """
        loader = self.trainer.val_dataloaders
        sampler = getattr(loader, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
            return batch
        size = len(batch["case_id"])
        first = batch_idx * loader.batch_size
        positions = [(first + index) * sampler.num_replicas + sampler.rank for index in range(size)]
        keep = [position < len(sampler.dataset) for position in positions]
        if all(keep):
            return batch
        if not any(keep):
            return None
        mask = torch.tensor(keep, device=batch["image"].device)
        return {key: _select(value, mask, keep) for key, value in batch.items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        distinct = self._distinct(batch, batch_idx)
        if distinct is None:
            return
        batch = distinct
        output = self.model.forward_features(self.model_input(batch))
        total, _ = self.objective(output, batch)
        self.val_loss.update(total.detach(), weight=batch["image"].shape[0])
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=self.task.monitor == "val/loss")
        if self.task.evaluates:
            self.val_dice.update(batch_dice(output.logits, batch["mask"], self.config.eval.threshold))
            self.log("val/dice", self.val_dice, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.config.optim
        params = [p for p in self.parameters() if p.requires_grad]
        if optim.name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=optim.lr,
                momentum=optim.momentum,
                weight_decay=optim.weight_decay,
                nesterov=optim.nesterov,
            )
        elif optim.name == "adam":
            optimizer = torch.optim.Adam(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        elif optim.name == "nadam":
            optimizer = torch.optim.NAdam(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        schedule = self.config.scheduler
        if schedule.name == "plateau":
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=schedule.factor, patience=schedule.patience, min_lr=schedule.min_lr
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {
                    "scheduler": plateau,
                    "monitor": "val/loss",
                    "interval": "epoch",
                    "frequency": self.config.train.val_every,
                },
            }
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total_steps // max(self.config.train.epochs, 1), 1)
        warmup_steps = int(schedule.warmup_epochs * steps_per_epoch)
        factor = lr_multiplier(schedule, optim.lr, total_steps, warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
