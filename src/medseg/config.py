"""The experiment schema: one typed, validated tree read from YAML, with dotted ``key=value`` overrides.

Every setting of a run lives here, so a run folder's ``config.yaml`` alone reproduces the run. Unknown keys and
wrong types are rejected with a :class:`ConfigError` that names the key and the valid choices.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from medseg.errors import MedsegError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SchedulerConfig",
    "StageConfig",
    "SyntheticConfig",
    "TermConfig",
    "TrainConfig",
    "TransformConfig",
    "apply_overrides",
    "check_image_size",
    "config_from_dict",
    "eval_batch_size",
    "load_config",
    "resolve_path",
    "save_config",
    "stage_config",
]


class ConfigError(MedsegError, ValueError):
    """A configuration problem, with a message naming the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which architecture to build.

    Attributes:
        name: registry name (``medseg models`` lists them).
        params: extra constructor arguments; ``in_channels`` and ``num_classes`` come from the data section.
        checkpoint: optional local weights (a medseg ``.ckpt`` or a plain state dict) loaded before training
            (relative paths as for ``data.root``);
            keys that fit are loaded, new modules keep their initialisation (the loaded/missing counts are logged).
        freeze_loaded: freeze the parameters loaded from ``checkpoint`` (BatchNorm statistics still update).
        checkpoint_min_fill: smallest share of the model's parameter elements that ``checkpoint`` must fill; a
            checkpoint of another architecture fills almost nothing and is refused. The default 0.5 asks for about
            the encoder of a U-shaped network (a U-Net's encoder holds 61% of its parameters); a model with extra
            modules (UTANet's TA-MoSC stage) or another head is still filled above 95%.
        checkpoint_strict: refuse a ``checkpoint`` that fills less than ``checkpoint_min_fill``; ``false`` loads
            whatever fits and only logs the counts.
    """

    name: str = "unet"
    params: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str | None = None
    freeze_loaded: bool = False
    checkpoint_min_fill: float = Field(0.5, ge=0, le=1)
    checkpoint_strict: bool = True


class SyntheticConfig(_Section):
    """The built-in synthetic dataset, generated on the fly from a seed.

    Attributes:
        num_train: training images.
        num_val: validation images.
        num_test: test images.
        size: side of the square images in pixels.
        seed: generator seed; the same seed always gives the same images.
    """

    num_train: int = Field(320, ge=1)
    num_val: int = Field(48, ge=1)
    num_test: int = Field(64, ge=1)
    size: int = Field(96, ge=16)
    seed: int = 0


class TransformConfig(_Section):
    """Augmentation and normalisation, applied per dataset.

    Attributes:
        normalize: ``unit`` (x/255), ``imagenet`` (x/255 then ImageNet mean/std), ``zscore`` (``mean``/``std``
            below, in 0..255 units), ``minmax`` (per image to [0, 1]) or ``none``.
        mean: per-channel means for ``zscore``.
        std: per-channel standard deviations for ``zscore``.
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        rot90: probability of a rotation by a random multiple of 90 degrees.
        rotate_degrees: maximum angle of a free rotation (0 disables it).
        rotate_prob: probability of the free rotation.
        scale: range of the zoom factor (above 1 enlarges the content), drawn log-uniformly.
        scale_prob: probability of the zoom.
        brightness: range of the factor that multiplies the raw intensities (0 stays black), drawn log-uniformly.
        brightness_prob: probability of the brightness change.
        contrast: range of the factor that stretches each channel about its image mean, drawn log-uniformly.
        contrast_prob: probability of the contrast change.
        gamma: range of the exponent applied to each channel rescaled to its image's [min, max], drawn
            log-uniformly.
        gamma_prob: probability of the gamma change.
        noise_std: largest standard deviation of the additive Gaussian noise, as a fraction of each channel's
            standard deviation in the image; drawn uniformly from ``[0, noise_std]``.
        noise_prob: probability of the noise.
        blur_sigma: range of the standard deviation in pixels of the Gaussian blur, drawn uniformly.
        blur_prob: probability of the blur.

    The augmentations run on whole training batches on the training device (:mod:`medseg.data.augment`); the new
    ones are off (probability 0) by default, with ranges close to nnU-Net's default augmentation ready for use.
    """

    normalize: Literal["unit", "imagenet", "zscore", "minmax", "none"] = "unit"
    mean: list[float] | None = None
    std: list[float] | None = None
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    rot90: float = Field(0.0, ge=0, le=1)
    rotate_degrees: float = Field(0.0, ge=0, le=180)
    rotate_prob: float = Field(0.0, ge=0, le=1)
    scale: tuple[float, float] = (0.7, 1.4)
    scale_prob: float = Field(0.0, ge=0, le=1)
    brightness: tuple[float, float] = (0.75, 1.25)
    brightness_prob: float = Field(0.0, ge=0, le=1)
    contrast: tuple[float, float] = (0.75, 1.25)
    contrast_prob: float = Field(0.0, ge=0, le=1)
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_prob: float = Field(0.0, ge=0, le=1)
    noise_std: float = Field(0.3, ge=0)
    noise_prob: float = Field(0.0, ge=0, le=1)
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    blur_prob: float = Field(0.0, ge=0, le=1)

    @field_validator("scale", "brightness", "contrast", "gamma", "blur_sigma")
    @classmethod
    def _positive_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 < low <= high:
            raise ValueError(f"needs [low, high] with 0 < low <= high, got [{low:g}, {high:g}]")
        return value


class DataConfig(_Section):
    """Where the images come from and how they are split and fed.

    Attributes:
        dataset: a registered reader name (``medseg.data.READERS``: the built-in readers of the datasets page and
            those of installed packages), or ``auto`` to detect the layout of ``root``.
        root: dataset folder; ``${MEDSEG_DATA}`` and ``~`` are expanded; a relative path resolves against the
            folder of the YAML file it is written in (the current directory for command-line overrides); the run's
            ``config.yaml`` stores the absolute path.
        image_size: training and inference size (square side in pixels).
        in_channels: image channels fed to the model (grey images are repeated, RGB converted to grey if 1).
        num_classes: number of classes including background (2 = binary, sigmoid head with one channel).
        class_names: names of the foreground classes 1..num_classes-1, used in reports (``class_1`` ... when
            unset).
        label_map: mask value -> class index, e.g. ``{255: 1}``; values not listed are an error.
        mask_threshold: binarise grey masks at this value first (for lossy JPEG masks), ``null`` to keep values.
        val_fraction: share of the training cases held out for validation when no official split exists.
        test_fraction: share held out for testing when no official split exists.
        split_seed: seed of those splits.
        split_file: reuse a persisted ``splits.json`` instead of making one (relative paths as for ``root``).
        folds: number of cross-validation folds (seeded by ``split_seed``, by patient) of a dataset without an
            official split; ``null`` when the dataset publishes its folds (BUSI's CMUNeXt split files) or for none.
        fold: the fold (1 .. folds) whose cases are the test split; validation is ``val_fraction`` of the others.
            ``null``: no cross-validation.
        limit: keep at most this many cases per split (quick experiments and tests).
        batch_size: training batch size.
        num_workers: DataLoader worker processes, or ``auto``: none on a machine with one or two CPUs (there the
            workers only take cores from the model; data come from the cache), else one per CPU but one, at most 8
            (see :func:`medseg.data.resolve_num_workers`).
        cache: serve training and validation from the preprocessed cache (:mod:`medseg.data.cache`): every case
            decoded, converted and resized once, then read from memory-mapped files; ``false`` prepares each case
            from its files at every epoch.
        cache_dir: folder of the preprocessed cache (relative paths as for ``root``); unset: ``$MEDSEG_CACHE``,
            else ``$XDG_CACHE_HOME/medseg``, else ``~/.cache/medseg``.
        synthetic: settings of the synthetic dataset.
        transforms: augmentation and normalisation.
    """

    dataset: str = "synthetic"
    root: str | None = None
    image_size: int = Field(128, ge=8)
    in_channels: int = Field(3, ge=1)
    num_classes: int = Field(2, ge=2)
    class_names: list[str] | None = None
    label_map: dict[int, int] | None = None
    mask_threshold: int | None = None
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_seed: int = 0
    split_file: str | None = None
    folds: int | None = Field(None, ge=2)
    fold: int | None = Field(None, ge=1)
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    num_workers: int | Literal["auto"] = "auto"
    cache: bool = True
    cache_dir: str | None = None
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    transforms: TransformConfig = Field(default_factory=TransformConfig)

    @field_validator("num_workers")
    @classmethod
    def _workers_not_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 or more, or auto")
        return value


class TermConfig(_Section):
    """An objective term added to the supervised loss (deep supervision, SelfReg, ReSeg alignment ...).

    Attributes:
        name: registered term name (``medseg.objectives.list_terms()``).
        weight: factor of the term in the total loss.
        params: the term's own settings.
    """

    name: str
    weight: float = Field(1.0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Section):
    """The training objective: weighted Dice plus cross-entropy (BCE for a binary task, CE for multi-class), plus
    optional terms; a model's own auxiliary losses (e.g. TA-MoSC's balance loss) are always added.

    Attributes:
        dice_weight: weight of the soft Dice term.
        ce_weight: weight of the (binary) cross-entropy term.
        include_background: whether the multi-class Dice averages over the background class too.
        terms: extra weighted terms over the model's features and outputs.
        teacher_checkpoint: checkpoint of a trained network that terms learning from a frozen teacher use (the
            ``reseg`` term); a stage's ``teacher_from`` sets it (relative paths as for ``data.root``).
    """

    dice_weight: float = Field(0.5, ge=0)
    ce_weight: float = Field(0.5, ge=0)
    include_background: bool = False
    terms: list[TermConfig] = Field(default_factory=list)
    teacher_checkpoint: str | None = None

    @field_validator("terms")
    @classmethod
    def _unique_terms(cls, terms: list[TermConfig]) -> list[TermConfig]:
        names = [term.name for term in terms]
        repeated = sorted({name for name in names if names.count(name) > 1 or name == "seg"})
        if repeated:
            raise ValueError(f"term names must be unique and not 'seg' (the supervised loss): {repeated}")
        return terms


class OptimConfig(_Section):
    """Optimiser.

    Attributes:
        name: ``adamw``, ``adam``, ``nadam`` or ``sgd``.
        lr: base learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        betas: Adam(W) betas.
        grad_clip: clip the gradients' global L2 norm to this value before each optimiser step (Lightning's
            ``gradient_clip_val``, norm algorithm); ``null`` = no clipping.
    """

    name: Literal["adamw", "adam", "nadam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = Field(None, gt=0)


class SchedulerConfig(_Section):
    """Learning-rate schedule.

    Attributes:
        name: ``none``, ``poly`` (lr·(1 − step/total)^power, per step), ``cosine`` (to ``min_lr``, per step) or
            ``plateau`` (multiply by ``factor`` when the validation loss has not improved for ``patience``
            validations, never below ``min_lr``).
        power: exponent of the poly schedule.
        min_lr: final learning rate of the cosine schedule, floor of the plateau schedule.
        warmup_epochs: linear warm-up length in epochs (0 disables; poly and cosine only).
        factor: plateau reduction factor.
        patience: plateau patience in validations.
    """

    name: Literal["none", "poly", "cosine", "plateau"] = "poly"
    power: float = Field(0.9, gt=0)
    min_lr: float = Field(0.0, ge=0)
    warmup_epochs: float = Field(0.0, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(5, ge=0)


class TrainConfig(_Section):
    """Training loop.

    Attributes:
        epochs: number of epochs.
        seed: global seed (Python, NumPy, torch).
        deterministic: ask torch for deterministic algorithms.
        precision: ``32``, ``bf16-mixed``, ``16-mixed`` or ``auto`` (bf16 where the CPU or GPU supports it).
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: number of devices per node or ``auto``.
        num_nodes: number of machines (Lightning's ``num_nodes``; see the README on several GPUs and nodes).
        strategy: ``auto`` (one device: no distribution; several: Lightning's DDP), ``ddp`` (one process per
            device, gloo on CPU, NCCL on GPU) or ``ddp_find_unused_parameters_true`` (DDP for models whose
            forward pass leaves some parameters unused).
        checkpoint_every_n_steps: also write ``checkpoints/last.ckpt`` every N optimiser steps, for long epochs
            (``null`` = only at the end of each epoch); see the README on what a mid-epoch resume repeats.
        loggers: further loggers, through Lightning's logger classes: ``csv`` (every logged value into
            ``logs/csv/metrics.csv``), ``tensorboard``, ``wandb``, ``mlflow`` (the last three are optional extras:
            ``pip install medseg[tensorboard]``). The run folder's ``metrics.csv`` and ``progress.png`` are always
            written.
        threads: torch CPU threads; ``null`` uses the CPUs this process may use (affinity mask and cgroup quota,
            or ``OMP_NUM_THREADS`` when set), see :mod:`medseg.runtime`.
        limit_train_batches: at most this many batches per epoch (``null`` = all).
        patience: stop early after this many validations without a better validation Dice (``null`` = never).
        val_every: validate every N epochs.
        progress_bar: show a progress bar when stdout and stderr are terminals; otherwise (or with ``false``) one
            log line per epoch (epoch, losses, validation Dice, seconds).
        task: what the run trains: ``segmentation`` or another task registered in :mod:`medseg.tasks` (such as
            ReSeg-UNet's stage 1; ``medseg.tasks.TASKS.names()`` lists them). The task decides the model's input, the
            objective, the augmentations, the validation value that picks ``best.ckpt`` and whether the run is
            evaluated.
        task_params: the task's own settings (its constructor's keyword arguments).
    """

    epochs: int = Field(50, ge=1)
    seed: int = 0
    deterministic: bool = False
    precision: Literal["32", "bf16-mixed", "16-mixed", "auto"] = "auto"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true"] = "auto"
    checkpoint_every_n_steps: int | None = Field(None, ge=1)
    loggers: list[Literal["csv", "tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    threads: int | None = Field(None, ge=1)
    limit_train_batches: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1)
    val_every: int = Field(1, ge=1)
    progress_bar: bool = True
    task: str = "segmentation"
    task_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class EvalConfig(_Section):
    """Evaluation settings used by ``medseg evaluate`` and at the end of ``medseg train``.

    Attributes:
        split: which split to evaluate.
        protocol: evaluation protocol name (``medseg evaluate --protocol`` overrides it).
        threshold: probability threshold of a binary task.
        hd95_empty: HD95 when exactly one of prediction and ground truth is empty: ``nan`` (reported as
            undefined and left out of the mean) or ``diagonal`` (the image diagonal, a worst-case penalty).
        both_empty: score of Dice/IoU/precision/recall when prediction and ground truth are both empty:
            ``one`` (perfect) or ``nan`` (undefined, left out of the mean).
        overlays: number of overlay images in the report.
        device: where ``medseg evaluate`` runs the model: ``auto`` (the first GPU when there is one, else the
            CPU), ``cpu``, ``cuda`` or ``cuda:N`` (``--device`` overrides it; ``medseg train`` evaluates on the
            device it trained on).
        precision: ``auto`` (the run's training precision on a GPU, float32 on the CPU), ``32``, ``bf16-mixed``
            or ``16-mixed``; the summary states the one used.
        batch_size: model inputs per batch (images, or slices of volumes, taken from consecutive cases): a number,
            or ``auto``: 16 on a GPU, 1 on the CPU, where a batch of these networks runs slower per input than
            one input at a time (measured in ``benchmarks/results/pipeline.md`` and ``inference.md``).
        metric_workers: processes that read and prepare the cases ahead of the model and compute their metrics
            while it predicts: ``auto`` (one per CPU but one; none with one or two CPUs, where the model's threads
            use them all) or a number; 0 does both in the main process.
        tta: test-time augmentation: average the probabilities of the input and of its ``tta_transforms``
            (``medseg predict --tta``, :class:`medseg.Predictor`; ``medseg evaluate`` too, and its summary says so).
        tta_transforms: the transforms of ``tta``: ``hflip``, ``vflip``, ``rot90``, ``rot180``, ``rot270``,
            ``transpose`` (quarter turns of a non-square input are predicted at the turned shape).
        mode: how ``medseg predict`` feeds an image to the model: ``resize`` (the whole image resized to
            ``data.image_size``, as in training and evaluation) or ``sliding_window`` (the image at its own size,
            in overlapping ``data.image_size`` windows, for images much larger than the training size).
        overlap: share of a window that overlaps its neighbour in ``sliding_window`` mode.
        blend: how overlapping windows are averaged: ``gaussian`` (centre weighted) or ``constant``.
        sigma_scale: standard deviation of the ``gaussian`` weighting as a share of the window side.
        largest_component: ``medseg predict`` keeps only the largest connected component of each class.
        fill_holes: ``medseg predict`` fills the holes of each class (background enclosed by one class).
        min_size: ``medseg predict`` removes connected components smaller than this many pixels (voxels for a
            volume); 0 keeps them all.
        slice_axis: the voxel axis (0, 1 or 2 of the NIfTI file; HDF5 volumes ``(D, H, W)`` count as ``(2, 1, 0)``)
            that ``medseg predict`` slices volumes along; 2, the default, is the axis medseg's volume readers slice
            for training.
    """

    split: str = "test"
    protocol: str = "perimage"
    threshold: float = Field(0.5, gt=0, lt=1)
    hd95_empty: Literal["nan", "diagonal"] = "nan"
    both_empty: Literal["one", "nan"] = "one"
    overlays: int = Field(8, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    metric_workers: int | Literal["auto"] = "auto"
    tta: bool = False
    tta_transforms: list[Literal["hflip", "vflip", "rot90", "rot180", "rot270", "transpose"]] = Field(
        default_factory=lambda: ["hflip", "vflip", "rot90", "rot180", "rot270"], min_length=1
    )
    mode: Literal["resize", "sliding_window"] = "resize"
    overlap: float = Field(0.5, ge=0, lt=1)
    blend: Literal["gaussian", "constant"] = "gaussian"
    sigma_scale: float = Field(0.125, gt=0)
    largest_component: bool = False
    fill_holes: bool = False
    min_size: int = Field(0, ge=0)
    slice_axis: Literal[0, 1, 2] = 2

    @field_validator("precision", mode="before")
    @classmethod
    def _eval_precision_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("batch_size")
    @classmethod
    def _positive_batch(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1, or auto")
        return value

    @field_validator("metric_workers")
    @classmethod
    def _no_negative_workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 (the main process), a positive number or auto")
        return value


def eval_batch_size(setting: int | str, device_type: str) -> int:
    """The model inputs per batch of evaluation and prediction.

    Args:
        setting: ``eval.batch_size``: a number, or ``auto`` (16 on a GPU, 1 on the CPU).
        device_type: where the model runs: ``cuda``, ``cpu``...

    Returns:
        The batch size.
    """
    if setting == "auto":
        return 16 if device_type == "cuda" else 1
    return int(setting)


class StageConfig(_Section):
    """One stage of a multi-stage recipe (e.g. UTANet: plain network, then TA-MoSC; ReSeg: teacher, then student).

    Attributes:
        name: stage name; its run folder is ``stages/<index>-<name>``.
        overrides: dotted key -> value applied to the experiment for this stage, e.g.
            ``{"model.params.use_tamosc": true, "train.epochs": 50}``.
        init_from: name of an earlier stage whose best checkpoint initialises this stage's model (non-strict).
        freeze_loaded: freeze the parameters loaded from ``init_from``.
        teacher_from: name of an earlier stage whose task makes a teacher (``TrainingTask.makes_teacher``); its
            **last** checkpoint (the final epoch, the teacher of the official ReSeg code) becomes this stage's
            ``loss.teacher_checkpoint``.
    """

    name: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    init_from: str | None = None
    freeze_loaded: bool = False
    teacher_from: str | None = None

    @field_validator("name")
    @classmethod
    def _safe_stage_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
            raise ValueError("use letters, digits, '_' and '-' only")
        return value


class ExperimentConfig(_Section):
    """A whole experiment.

    Attributes:
        name: run name; the run folder is ``<output_dir>/<name>``.
        output_dir: parent folder of run folders.
        model: architecture.
        data: data and augmentation.
        loss: supervised loss.
        optim: optimiser.
        scheduler: learning-rate schedule.
        train: training loop.
        eval: evaluation.
        stages: a multi-stage recipe; empty for a single training run. Each stage trains the experiment with its
            overrides; evaluation uses the last stage.
    """

    name: str = "experiment"
    output_dir: str = "runs"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    stages: list[StageConfig] = Field(default_factory=list)
    _path_sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
            raise ValueError("use letters, digits, '.', '_' and '-' only")
        return value

    @model_validator(mode="after")
    def _stages_fit(self) -> ExperimentConfig:
        seen: list[str] = []
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"stage name {stage.name!r} is used twice")
            for key, source in (("init_from", stage.init_from), ("teacher_from", stage.teacher_from)):
                if source is not None and source not in seen:
                    raise ValueError(f"stage {stage.name!r}: {key}={source!r} is not an earlier stage")
            for key in stage.overrides:
                if key.split(".")[0] in {"name", "output_dir", "stages"}:
                    raise ValueError(f"stage {stage.name!r} cannot override {key!r}")
            seen.append(stage.name)
        return self

    @model_validator(mode="after")
    def _class_names_fit(self) -> ExperimentConfig:
        names = self.data.class_names
        if names is not None and len(names) != self.data.num_classes - 1:
            raise ValueError(
                f"data.class_names needs {self.data.num_classes - 1} names (foreground classes), got {len(names)}"
            )
        return self

    @property
    def path_sources(self) -> dict[str, str]:
        """Dotted path key -> the text it was configured with, for the paths that resolving changed."""
        return dict(self._path_sources)

    @property
    def foreground_names(self) -> tuple[str, ...]:
        """Names of the foreground classes (``data.class_names`` or ``class_1`` ...)."""
        names = self.data.class_names or [f"class_{index}" for index in range(1, self.data.num_classes)]
        return tuple(names)

    @property
    def binary(self) -> bool:
        """Whether the task is binary (one sigmoid logit channel)."""
        return self.data.num_classes == 2

    @property
    def out_channels(self) -> int:
        """Number of logit channels the model must produce."""
        return 1 if self.binary else self.data.num_classes


_ENV_PATTERN = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def resolve_path(path: str, base: Path | None = None) -> Path:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``~`` in a configured path.

    A set variable that starts the path is taken as a path of its own (relative values resolve against the current
    directory, where the variable was set); a default and any other relative text resolve against ``base``.

    Args:
        path: the configured text.
        base: folder that relative paths resolve against (the current directory when ``None``).

    Returns:
        The absolute path.

    Raises:
        ConfigError: a ``${VAR}`` without default that is not set.
    """

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            value = os.environ[name]
            return str(Path(value).expanduser().resolve()) if match.start() == 0 and value else value
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} used in path {path!r} is not set")

    expanded = Path(_ENV_PATTERN.sub(substitute, path)).expanduser()
    if not expanded.is_absolute():
        expanded = (base or Path.cwd()) / expanded
    return expanded.resolve()


PATH_KEYS = ("data.root", "data.split_file", "data.cache_dir", "model.checkpoint", "loss.teacher_checkpoint")
"""Configured paths that are made absolute when a config is loaded (outputs, ``output_dir``, stay relative)."""


def _get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _resolve_paths(raw: dict[str, Any], base: Path, sources: dict[str, str]) -> None:
    """Make the :data:`PATH_KEYS` of ``raw`` (and of its stages' overrides) absolute against ``base``.

    Args:
        raw: the config tree (modified in place).
        base: folder that relative paths resolve against.
        sources: receives ``key -> configured text`` for every path that changed (an override replaces the text
            of the file).
    """
    trees: list[tuple[str, dict[str, Any], bool]] = [("", raw, False)]
    for stage in raw.get("stages") or []:
        if isinstance(stage, dict) and isinstance(stage.get("overrides"), dict):
            trees.append((f"stages.{stage.get('name')}.overrides.", stage["overrides"], True))
    for prefix, tree, flat in trees:
        for key in PATH_KEYS:
            value = tree.get(key) if flat else _get_dotted(tree, key)
            if not isinstance(value, str):
                continue
            resolved = str(resolve_path(value, base))
            if resolved == value:
                continue
            sources[prefix + key] = value
            if flat:
                tree[key] = resolved
            else:
                _set_dotted(tree, key, resolved)


def _section_fields(model: type[BaseModel]) -> dict[str, Any]:
    return dict(model.model_fields)


def _check_keys(data: Any, model: type[BaseModel], prefix: str) -> None:
    """Reject unknown keys with the list of valid ones (pydantic's message does not list them)."""
    if not isinstance(data, dict):
        return
    fields = _section_fields(model)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            valid = ", ".join(fields)
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            where = f"under '{prefix[:-1]}'" if prefix else "at the top level"
            raise ConfigError(f"unknown config key '{dotted}'{hint}; valid keys {where}: {valid}")
        annotation = fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_keys(value, annotation, f"{dotted}.")


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if "input" in item and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        lines.append(f"config key '{key}': {message}")
    return "; ".join(lines)


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A config written before ``train.task_params`` (a run folder's, a checkpoint's) in today's keys.

    Such a config holds ``train.recon_target``: a value other than the former default ``image`` becomes
    ``train.task_params.target`` (unless that is set, or the run segments, where it had no effect); the key is
    dropped.

    Args:
        raw: the config tree (not modified).

    Returns:
        ``raw`` itself, or an upgraded copy.
    """
    train = raw.get("train")
    if not isinstance(train, dict) or "recon_target" not in train:
        return raw
    train = dict(train)
    target = train.pop("recon_target")
    params = train.get("task_params") or {}
    if target != "image" and train.get("task", "segmentation") != "segmentation" and isinstance(params, dict):
        train["task_params"] = {"target": target, **params}
    return {**raw, "train": train}


def _build(raw: dict[str, Any]) -> ExperimentConfig:
    raw = _upgrade(raw)
    _check_keys(raw, ExperimentConfig, "")
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error)) from None
    from medseg.tasks import build_task  # the task registry imports torch: loaded when a config is built

    build_task(config)
    stages = {stage.name: stage for stage in config.stages}
    for stage in config.stages:
        stage_config(config, stage)
        if stage.teacher_from:
            _check_teacher(stage, stage_config(config, stages[stage.teacher_from]))
            if not stage_config(config, stage).loss.terms:
                raise ConfigError(
                    f"stage {stage.name!r}: teacher_from={stage.teacher_from!r} but the stage has no loss.terms, so "
                    "no term learns from the teacher (add one, e.g. {name: reseg})"
                )
    return config


def _check_teacher(stage: StageConfig, teacher: ExperimentConfig) -> None:
    """Refuse a ``teacher_from`` stage whose task makes no teacher (the message names the tasks that do)."""
    from medseg.tasks import TASKS, task_class

    name = teacher.train.task
    if not task_class(name).makes_teacher:
        makers = ", ".join(task for task, cls in TASKS.items() if cls.makes_teacher) or "none"
        raise ConfigError(
            f"stage {stage.name!r}: teacher_from={stage.teacher_from!r} trains train.task={name}, which makes no "
            f"teacher (tasks that do: {makers})"
        )


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


_PYTHON_TAG = re.compile(r"tag:yaml\.org,2002:(python/[^'\s]*)")


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's error as one line: what is wrong, and where (its own message spans several lines).

    A Python tag (``!!python/object``, ``!!python/name`` ...) is reported as refused: configs are read with
    ``yaml.safe_load``, which never constructs Python objects.
    """
    if not isinstance(error, yaml.MarkedYAMLError):
        return f"not valid YAML: {' '.join(str(error).split())}"
    mark = error.problem_mark or error.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    tag = _PYTHON_TAG.search(error.problem or "")
    if tag:
        return f"the tag !!{tag.group(1)}{where} is refused: a config holds plain values, never Python objects"
    what = "; ".join(" ".join(part.split()) for part in (error.context, error.problem) if part)
    return f"not valid YAML{where}: {what}"


_EXPERIMENT_ONLY = {"name", "output_dir", "stages"}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config tree; values are parsed as YAML scalars.

    In a multi-stage experiment an override also goes into every stage's ``overrides`` (except ``name``,
    ``output_dir`` and ``stages``), so the command line wins over what a recipe's stages set (``train.epochs=1``
    shortens every stage).

    Args:
        raw: the tree read from YAML (modified in place and returned).
        overrides: texts such as ``train.epochs=3`` or ``data.label_map={255: 1}``.

    Returns:
        The updated tree.

    Raises:
        ConfigError: an override without ``=`` or with an empty key.
    """
    parsed = []
    for text in overrides:
        key, sep, value_text = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {text!r} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(value_text) if value_text.strip() else None
        except yaml.YAMLError as error:
            raise ConfigError(f"override {text!r}: {_yaml_problem(error)}") from None
        _set_dotted(raw, key, value)
        parsed.append((key, value))
    for stage in raw.get("stages") or []:
        if isinstance(stage, dict):
            stage_overrides = stage.setdefault("overrides", {})
            for key, value in parsed:
                if key.split(".")[0] not in _EXPERIMENT_ONLY and isinstance(stage_overrides, dict):
                    stage_overrides[key] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file, apply overrides and validate.

    Args:
        path: YAML file; ``None`` starts from the defaults.
        overrides: dotted ``key=value`` texts applied after reading.

    Paths (``data.root``, ``data.split_file``, ``model.checkpoint``) become absolute: relative ones written in the
    file resolve against the file's folder, those given as overrides against the current directory, so a run
    folder's ``config.yaml`` works from any directory.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: unreadable file, unknown key or invalid value.
    """
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} cannot be read as UTF-8 text: {error}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path}: {_yaml_problem(error)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(loaded).__name__}")
        raw = loaded or {}
        _resolve_paths(raw, path.resolve().parent, sources)
    raw = apply_overrides(raw, overrides or [])
    _resolve_paths(raw, Path.cwd(), sources)
    config = _build(raw)
    config._path_sources = sources
    _check_dataset_name(config)
    check_image_size(config)
    for stage in config.stages:
        try:
            single = stage_config(config, stage)
            _check_dataset_name(single)
            check_image_size(single)
        except ConfigError as error:
            raise ConfigError(f"stage {stage.name!r}: {error}") from None
    return config


def _check_dataset_name(config: ExperimentConfig) -> None:
    """Refuse a ``data.dataset`` that is neither ``auto`` nor a registered reader (installed packages' included).

    Raises:
        ConfigError: naming the value and listing the valid ones.
    """
    from medseg.data.registry import check_reader_name

    check_reader_name(config.data.dataset, f"dataset {config.data.dataset!r} (data.dataset)")


def _output_stride(config: ExperimentConfig) -> int | None:
    """The output stride of the model ``config`` builds, without allocating it (built on the ``meta`` device);
    ``None`` when it cannot be told (unknown model or arguments: building the model reports those)."""
    import torch

    from medseg.models import create_model, model_info
    from medseg.models.base import SegmentationModel

    try:
        factory = model_info(config.model.name).factory
    except MedsegError:
        return None
    if isinstance(factory, type):  # a class attribute states it, unless only the base class's default does
        owner = next((cls for cls in factory.__mro__ if "output_stride" in vars(cls)), SegmentationModel)
        if owner is not SegmentationModel:
            return int(vars(owner)["output_stride"])
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            model = create_model(
                config.model.name,
                in_channels=config.data.in_channels,
                num_classes=config.out_channels,
                **config.model.params,
            )
    except Exception:  # any problem building the model is reported where it is built for real
        return None
    return int(model.output_stride)


def check_image_size(config: ExperimentConfig) -> None:
    """Refuse a ``data.image_size`` that is not a multiple of the model's output stride.

    Args:
        config: a single-run configuration.

    Raises:
        ConfigError: naming the size, the model, its output stride and the nearest valid sizes.
    """
    stride = _output_stride(config)
    if stride is None or config.data.image_size % stride == 0:
        return
    from medseg.models.base import stride_problem

    problem = stride_problem({"data.image_size": config.data.image_size}, stride)
    raise ConfigError(f"model {config.model.name!r}: {problem}")


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a config tree (e.g. read back from a checkpoint).

    Args:
        raw: nested mapping as written by :func:`save_config`.

    Returns:
        The validated configuration.
    """
    return _build(raw)


def stage_config(
    config: ExperimentConfig,
    stage: StageConfig,
    init_checkpoint: Path | None = None,
    teacher_checkpoint: Path | None = None,
) -> ExperimentConfig:
    """The single-run configuration of one stage: the experiment with the stage's overrides and no stages.

    Args:
        config: the multi-stage experiment.
        stage: one of ``config.stages``.
        init_checkpoint: checkpoint of the ``init_from`` stage, loaded into this stage's model.
        teacher_checkpoint: checkpoint of the ``teacher_from`` stage, set as the stage's
            ``loss.teacher_checkpoint``.

    Returns:
        The validated stage configuration.

    Raises:
        ConfigError: an override with an unknown key or a wrong value (the message names the stage).
    """
    raw = config.model_dump(mode="json")
    raw["stages"] = []
    for key, value in stage.overrides.items():
        _set_dotted(raw, key, value)
    if init_checkpoint is not None:
        raw["model"]["checkpoint"] = str(init_checkpoint)
        raw["model"]["freeze_loaded"] = stage.freeze_loaded
    if teacher_checkpoint is not None:
        raw["loss"]["teacher_checkpoint"] = str(teacher_checkpoint)
    try:
        result = _build(raw)
    except ConfigError as error:
        raise ConfigError(f"stage {stage.name!r}: {error}") from None
    result._path_sources = config.path_sources
    return result


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the fully resolved configuration as YAML.

    Paths are written resolved (absolute); the text each was configured with is kept in a comment at the top.

    Args:
        config: configuration to write.
        path: destination file.
    """
    header = "".join(f"# {key} was configured as {text}\n" for key, text in config.path_sources.items())
    Path(path).write_text(header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
