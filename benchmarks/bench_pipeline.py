"""Does the pipeline keep up with the model? Data, training and evaluation throughput, new path and old side by side.

Run from the repository root (data from ``$MEDSEG_DATA``, default the ``shared/data`` folder beside the repository; a
dataset that is absent is skipped with a message)::

    .venv/bin/python benchmarks/bench_pipeline.py            # CPU, about 15-20 min on 2 cores -> results/pipeline.md
    python benchmarks/bench_pipeline.py                      # with a CUDA GPU -> results/pipeline-cuda.md
    .venv/bin/python benchmarks/bench_pipeline.py --quick    # smoke run (64 px, few cases, one timed step)

Each run writes its page and its object (``"cpu"`` or ``"cuda"``, the device it measured) of
``results/pipeline.json``, keeping the other device's object. ``--device cpu`` measures the CPU on a GPU machine;
``--quick`` writes into a temporary folder unless ``--out-dir`` is given.

Workloads: the recipes ``configs/unet-kvasir.yaml`` (U-Net, 32 base channels) and ``configs/resunetpp-kvasir.yaml``
(ResUNet++) on Kvasir-SEG at 256 px, ``configs/unet-acdc.yaml`` (U-Net, 64 base channels) on ACDC at 224 px, each
with its recipe's data settings, augmentation, loss, optimiser and precision (``auto``: bf16 where the CPU or GPU
runs it), at batch 8 on the CPU and 32 on a GPU. Two paths, measured in the same run:

* new: the preprocessed cache (``data.cache: true``, built cold in a fresh temporary ``MEDSEG_CACHE``),
  ``data.num_workers: auto`` (none on one or two CPUs), batch augmentation on the training device, and
  ``medseg evaluate``'s defaults (the GPU when there is one, ``eval.batch_size``, ``eval.metric_workers: auto``);
* old: ``data.cache: false`` and ``data.num_workers: 0`` (the former default): every item is read, prepared and
  resized in the training process. The old per-sample MONAI augmentation no longer exists in the code, so the old
  path's training batches are augmented on the device too: its figures are those of the current uncached path,
  which decodes, prepares and resizes each sample as the old code did. Evaluation: the serial CPU path,
  ``--device cpu --batch-size 1 --workers 0`` (one slice at a time, metrics in the main process), as the serial
  reference fixtures of the evaluation tests are made. A third evaluation runs the serial path with surface distances
  over the whole arrays (the bounding-box crop of ``medseg.metrics.binary._crop_to_union`` turned off, as the metric
  code was before the crop), to compare with the evaluation as it was before batching, workers and the crop.

Measured per workload, in one fresh subprocess per workload (in this order; the evaluations in another):

(a) data pipeline alone, images/s: cold (building the cache of every split, as the first run does), warm (the
    training DataLoader of ``medseg train`` over the cache), warm + transfer to the device + batch augmentation, and
    the old path's DataLoader; plus the old path's opening of the datasets (it checks every case).
(b) model-only training step on synthetic tensors already on the device: forward, the recipe's loss, backward and the
    recipe's optimiser step (``SegmentationTask.configure_optimizers``) under the run's precision (autocast); measured
    before and again after the two training runs of (c), and the mean of both taken, so that a load that drifts
    during the run moves (b) as it moves (c).
(c) end-to-end training: ``medseg.engine.train`` (what ``medseg train`` runs: run folder, datasets, the Lightning
    loop, ``on_after_batch_transfer`` augmentation, ``training_step``) for one epoch limited to the warm-up and timed
    batches; a callback stamps the end of every training batch (after ``torch.cuda.synchronize()``) and the step time
    is the mean over the timed batches, so start-up and warm-up are left out.
(d) the ratio (c)/(b): the share of the model's own speed that the training loop around it leaves.
(e) one training epoch: the timed step time x the batches of a full epoch (extrapolated, not run) + the validation
    pass of the same run (measured, full validation split); the start-up of the run (``train`` called to its first
    batch) is shown apart. The full evaluation of the ACDC test split (40 volumes, ``transunet_acdc``) with
    ``medseg.evaluation.evaluate_run`` (what ``medseg evaluate`` runs), split into model and metrics by its timings.
    The evaluated checkpoint is the last one of the new-path ACDC run of (c): the recipe's model at its input size,
    so the model part is what it is for any checkpoint. So briefly trained (a few dozen steps are not enough either,
    with the recipe's SGD or with AdamW at 1e-3: the foreground probabilities stay near the class frequencies), it
    predicts background or noise, whose metrics cost what such masks cost; the metrics of a trained model, which
    predicts about the ground truth, are measured by scoring every test volume's ground truth as its prediction
    (cropped and uncropped), and the page also gives each serial path's time with those metrics in place of the
    measured ones. Last, the model alone (random slices at the input size; batch 1 and ``eval.batch_size``, float32
    and bf16) shows what batching and precision could give the evaluation on the device.

Steps: ``--warmup`` untimed then ``--steps`` timed (CPU 3 + 5, GPU 5 + 15, fewer when an epoch is shorter). Before
anything runs, every file of the datasets is read once, so "cold" means an empty medseg cache, not a cold disk. The page
records the machine, the torch version and the load average: on a shared machine other processes slow every figure.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
EVAL_PROTOCOL = "transunet_acdc"
QUICK_SIZE, QUICK_CASES = 64, 16
RATIO_GOAL = {"cpu": 0.8, "cuda": 0.9}
EVAL_SPEEDUP_GOAL = {"cpu": 2.0, "cuda": 5.0}
CUDA_EVAL_SECONDS_GOAL = 10.0


@dataclass(frozen=True)
class Workload:
    """One recipe measured at its image size.

    Attributes:
        model: model name, as in the JSON keys.
        dataset: dataset name, as in the JSON keys.
        recipe: the file in ``configs/``.
        folder: the dataset's folder under ``$MEDSEG_DATA``.
    """

    model: str
    dataset: str
    recipe: str
    folder: str

    @property
    def key(self) -> str:
        return f"{self.model}_{self.dataset}"


WORKLOADS = (
    Workload("unet", "kvasir", "unet-kvasir.yaml", "kvasir-seg"),
    Workload("resunetpp", "kvasir", "resunetpp-kvasir.yaml", "kvasir-seg"),
    Workload("unet", "acdc", "unet-acdc.yaml", "acdc-h5"),
)
EVAL_WORKLOAD = WORKLOADS[2]


def _now(cuda: bool) -> float:
    """The clock, after the GPU's queued work is done."""
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter()


def _config(spec: dict[str, Any], new: bool, batches: int | None = None) -> Any:
    """The recipe of ``spec["recipe"]`` on the benchmark's device, batch and path (one epoch)."""
    from medseg.config import load_config

    overrides = [
        f"output_dir={spec['runs']}",
        "train.epochs=1",
        "train.progress_bar=false",
        f"train.accelerator={'gpu' if spec['device'] == 'cuda' else 'cpu'}",
        f"data.batch_size={spec['batch']}",
        f"data.cache={'true' if new else 'false'}",
        f"data.num_workers={'auto' if new else 0}",
    ]
    if batches is not None:
        overrides.append(f"train.limit_train_batches={batches}")
    if spec["quick"]:
        overrides += [f"data.image_size={QUICK_SIZE}", f"data.limit={QUICK_CASES}"]
    return load_config(REPO / "configs" / spec["recipe"], overrides)


def _loader_rates(loader: Any, batches: int, config: Any, device: torch.device) -> dict[str, Any]:
    """Images/s of a DataLoader alone and with the transfer to ``device`` and the batch augmentation.

    The first batch (worker start-up, first use of the augmentation) is not timed; then up to ``batches`` batches.
    """
    from medseg.data.augment import BatchAugment, batch_generator

    cuda = device.type == "cuda"
    augment = BatchAugment(config.data)

    def augmented(batch: dict[str, Any], index: int) -> None:
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        augment(image, mask, batch_generator(config.train.seed, 0, index))

    iterator = iter(loader)
    augmented(next(iterator), 0)
    load_s = augment_s = 0.0
    images = 0
    for index in range(1, batches + 1):
        started = _now(cuda)
        batch = next(iterator, None)
        if batch is None:
            break
        loaded = _now(cuda)
        augmented(batch, index)
        augment_s += _now(cuda) - loaded
        load_s += loaded - started
        images += len(batch["image"])
    return {
        "images": images,
        "loader_ips": images / load_s,
        "augment_ips": images / augment_s,
        "pipeline_ips": images / (load_s + augment_s),
    }


def measure_data(spec: dict[str, Any]) -> dict[str, Any]:
    """(a): build the cache cold, then time the new and the old training DataLoader."""
    from medseg.data import build_datasets, build_reader, make_splits
    from medseg.engine.trainer import _loader  # the DataLoader medseg train builds
    from medseg.runtime import set_threads

    device = torch.device(spec["device"])
    config = _config(spec, new=True)
    set_threads(config.train.threads)
    reader = build_reader(config.data)
    splits = make_splits(reader, config.data)
    started = time.perf_counter()
    datasets = build_datasets(reader, splits, config.data)
    cold_s = time.perf_counter() - started
    cached = sum(len(dataset) for dataset in datasets.values())
    started = time.perf_counter()
    build_datasets(reader, splits, config.data)
    open_s = time.perf_counter() - started
    loader = _loader(datasets["train"], config, True)
    epoch_batches = len(loader)
    batches = min(spec["loader_batches"], epoch_batches - 1)
    new = {"cold_ips": cached / cold_s, "cold_s": cold_s, "cached": cached, "open_s": open_s}
    new.update(_loader_rates(loader, batches, config, device))
    del loader
    old_config = _config(spec, new=False)
    started = time.perf_counter()
    old_sets = build_datasets(reader, splits, old_config.data)
    old = {"open_s": time.perf_counter() - started, "cases": sum(len(dataset) for dataset in old_sets.values())}
    old.update(_loader_rates(_loader(old_sets["train"], old_config, True), batches, old_config, device))
    return {
        "new": new,
        "old": old,
        "train_images": len(datasets["train"]),
        "epoch_batches": epoch_batches,
        "image_size": config.data.image_size,
        "num_workers": {"new": loader_workers(config), "old": 0},
    }


def loader_workers(config: Any) -> int:
    """The DataLoader workers ``data.num_workers`` gives on this machine."""
    from medseg.data import resolve_num_workers

    return resolve_num_workers(config.data.num_workers)


def measure_model(spec: dict[str, Any]) -> dict[str, Any]:
    """(b): training steps of the recipe's model, loss and optimiser on synthetic tensors already on the device."""
    from medseg.engine import SegmentationTask
    from medseg.engine.trainer import resolve_precision
    from medseg.runtime import set_threads

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    config = _config(spec, new=True)
    set_threads(config.train.threads)
    torch.manual_seed(0)
    task = SegmentationTask(config).to(device).train()
    # configure_optimizers reads the run length for its schedule, which a plain loop does not use
    task.trainer = SimpleNamespace(estimated_stepping_batches=spec["warmup"] + spec["steps"])
    optimizer = task.configure_optimizers()["optimizer"]
    precision = resolve_precision(config.train.precision, config.train.accelerator)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
    data = config.data
    size = data.image_size
    batch = {
        "image": torch.randn(spec["batch"], data.in_channels, size, size, device=device),
        "mask": torch.randint(0, data.num_classes, (spec["batch"], size, size), device=device),
    }

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            total, _ = task.objective(task.model.forward_features(batch["image"]), batch)
        if scaler is None:
            total.backward()
            optimizer.step()
        else:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()

    for _ in range(spec["warmup"]):
        step()
    stamps = [_now(cuda)]
    for _ in range(spec["steps"]):
        step()
        stamps.append(_now(cuda))
    times = [end - start for start, end in itertools.pairwise(stamps)]
    return {
        "step_s": (stamps[-1] - stamps[0]) / spec["steps"],
        "step_times": times,
        "precision": precision,
        "parameters": sum(p.numel() for p in task.model.parameters()),
    }


class StepClock(Callback):
    """Stamps the training batches and the validation pass of a run (after the GPU's work is done).

    Args:
        cuda: synchronise the GPU before reading the clock.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.first_batch: float | None = None
        self.batch_ends: list[float] = []
        self.val_started = 0.0
        self.val_s: float | None = None
        self.epoch_batches = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.epoch_batches = len(trainer.train_dataloader)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.first_batch is None:
            self.first_batch = _now(self.cuda)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.batch_ends.append(_now(self.cuda))

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.val_started = _now(self.cuda)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.val_s = _now(self.cuda) - self.val_started


def measure_training(spec: dict[str, Any]) -> dict[str, Any]:
    """(c) and (e): one epoch of ``medseg.engine.train``, limited to the warm-up, timed and extra batches."""
    from medseg.engine import train

    warmup, steps = spec["warmup"], spec["steps"]
    config = _config(spec, new=spec["new"], batches=warmup + steps)
    clock = StepClock(spec["device"] == "cuda")
    started = time.perf_counter()
    result = train(config, extra_callbacks=[clock])
    total_s = time.perf_counter() - started
    ends = clock.batch_ends
    if len(ends) < warmup + steps:
        raise RuntimeError(f"the epoch ran {len(ends)} batches, fewer than {warmup} warm-up + {steps} timed")
    assert clock.first_batch is not None
    return {
        "step_s": (ends[warmup + steps - 1] - ends[warmup - 1]) / steps,
        "step_times": [end - start for start, end in itertools.pairwise(ends[warmup - 1 : warmup + steps])],
        "startup_s": clock.first_batch - started,
        "val_s": clock.val_s,
        "epoch_batches": clock.epoch_batches,
        "batches_run": len(ends),
        "total_s": total_s,
        "run_dir": str(result.run_dir),
        "val_dice": result.best_val_dice,
        "workers": loader_workers(config),
    }


EVAL_PATHS: dict[str, dict[str, Any]] = {
    "new": {"device": None, "batch_size": None, "workers": None},
    "old": {"device": "cpu", "batch_size": 1, "workers": 0},
    "uncropped": {"device": "cpu", "batch_size": 1, "workers": 0},
}
"""The evaluation paths, in the order they run; ``None``: ``medseg evaluate``'s default (``eval.*`` of the run; the
benchmark's device)."""


def _truth_metrics_s(run_dir: Path) -> float:
    """Seconds to score every test volume of a run with its ground truth as the prediction, in this process.

    A trained model predicts about the ground truth, so this is what its metrics cost (at least: a stray blob far
    from the heart widens the box the surface distances are computed on); a briefly trained one predicts background
    only, which costs nothing to score.
    """
    from medseg.config import load_config
    from medseg.data import build_reader, load_splits
    from medseg.evaluation import run_protocol
    from medseg.metrics.scoring import timed_score

    config = load_config(run_dir / "config.yaml")
    evaluator = run_protocol(config, EVAL_PROTOCOL)
    reader = build_reader(config.data)
    seconds = 0.0
    for case_id in load_splits(run_dir / "splits.json")["test"]:
        case = reader.load_volume(case_id)
        seconds += timed_score(evaluator.score_task(case, case.mask))[1]
    return seconds


def _forward_s(run_dir: Path, device: torch.device, batch_size: int, precision: str, slices: int = 32) -> float:
    """Seconds per slice of the run's model predicting ``slices`` random slices at its input size, in batches of
    ``batch_size``, in float32 or under bfloat16 autocast (after one untimed batch)."""
    from medseg.config import load_config
    from medseg.engine import build_model

    config = load_config(run_dir / "config.yaml")
    model = build_model(config).to(device).eval()
    size = config.data.image_size
    inputs = torch.rand(slices, config.data.in_channels, size, size, device=device)
    bf16 = precision == "bf16-mixed"
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model(inputs[:batch_size])
        started = _now(device.type == "cuda")
        for first in range(0, slices, batch_size):
            model(inputs[first : first + batch_size])
        return (_now(device.type == "cuda") - started) / slices


def measure_evaluations(spec: dict[str, Any]) -> dict[str, Any]:
    """(e): the metrics of the ground truth as the prediction (first, which also loads what scoring loads once),
    ``evaluate_run`` of the ACDC run's test split on the new path and the old serial path, then both again with
    uncropped surface distances (this turns the crop off for the rest of the process), and the model alone."""
    from medseg.config import load_config
    from medseg.evaluation import evaluate_run, metric_workers
    from medseg.metrics import binary

    run_dir = Path(spec["run_dir"])
    eval_cfg = load_config(run_dir / "config.yaml").eval
    results = {}
    truth_metrics = {"cropped": _truth_metrics_s(run_dir)}
    for name, path in EVAL_PATHS.items():
        if name == "uncropped":  # surface distances over the whole arrays, not cropped to the masks' bounding box
            binary._crop_to_union = lambda a, b: (a, b)
            truth_metrics["uncropped"] = _truth_metrics_s(run_dir)
        output = evaluate_run(
            run_dir,
            split="test",
            checkpoint="last",
            protocol=EVAL_PROTOCOL,
            progress=False,
            device=path["device"] or spec["device"],
            batch_size=path["batch_size"],
            workers=path["workers"],
        )
        results[name] = {
            "timings": output.timings,
            "headline": output.headline,
            "cases": output.summary["num_cases"],
            "device": output.summary["device"],
            "precision": output.summary["precision"],
            "batch_size": output.summary["batch_size"],
            "workers": metric_workers(eval_cfg.metric_workers) if path["workers"] is None else path["workers"],
        }
    device = torch.device(results["new"]["device"].split(" ")[0])
    forward = {
        f"{precision} batch {size}": _forward_s(run_dir, device, size, precision)
        for precision in ("32", "bf16-mixed")
        for size in sorted({1, 16, results["new"]["batch_size"]})
    }
    return {"runs": results, "truth_metrics_s": truth_metrics, "forward_s_per_slice": forward}


def measure_workload(spec: dict[str, Any]) -> dict[str, Any]:
    """(a)-(d) and the training epoch of (e) for one recipe, in this process: data, model, new and old training."""
    data = measure_data(spec)
    batches = data["epoch_batches"]
    steps = max(1, min(spec["steps"], batches - 1))
    warmup = max(1, min(spec["warmup"], batches - steps))
    if warmup + steps > batches:
        raise RuntimeError(f"{spec['recipe']}: an epoch has {batches} batches, too few to time a step")
    spec = {**spec, "warmup": warmup, "steps": steps}
    before = measure_model(spec)
    new = measure_training({**spec, "new": True})
    old = measure_training({**spec, "new": False})
    after = measure_model(spec)  # the mean of both windows: a drifting load moves (b) and (c) alike
    model = {**before, "step_s": (before["step_s"] + after["step_s"]) / 2, "step_times": before["step_times"]}
    model["step_times_after"] = after["step_times"]
    model_ips = spec["batch"] / model["step_s"]
    return {
        "recipe": f"configs/{spec['recipe']}",
        "warmup": warmup,
        "steps": steps,
        "data": data,
        "model_step": model,
        "train": {"new": new, "old": old},
        "model_ips": model_ips,
        "ratio": (spec["batch"] / new["step_s"]) / model_ips,
        "ratio_old": (spec["batch"] / old["step_s"]) / model_ips,
    }


JOBS = {"workload": measure_workload, "evaluate": measure_evaluations}


LOAD_SAMPLES: list[float] = []
"""The 1-minute load average when each measurement subprocess starts."""


def _run_job(kind: str, spec: dict[str, Any], log_dir: Path) -> dict[str, Any]:
    """Run one measurement in a fresh subprocess; its output goes to a log file, its result to a JSON file."""
    LOAD_SAMPLES.append(_load_average()[0])
    name = f"{len(list(log_dir.glob('*.log'))):02d}-{kind}-{spec.get('label', '')}"
    result_path, log_path = log_dir / f"{name}.json", log_dir / f"{name}.log"
    command = [sys.executable, __file__, "--worker", kind, json.dumps(spec), "--result", str(result_path)]
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    print(f"  {kind} {spec.get('label', '')}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text().strip().splitlines()[-20:])
        raise RuntimeError(f"{kind} {spec.get('label', '')} failed, exit status {done.returncode}:\n{tail}")
    return json.loads(result_path.read_text())


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _warm_page_cache(folder: Path) -> None:
    """Read every file of a dataset once, so the first measurement does not also pay for a cold disk."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as stream:
                while stream.read(1 << 22):
                    pass


# ----------------------------------------------------------------------------------------------------------------
# the page


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _epoch_s(train: dict[str, Any]) -> float:
    """One epoch: the timed step x the batches of an epoch + the measured validation pass."""
    return train["step_s"] * train["epoch_batches"] + (train["val_s"] or 0.0)


def report(result: dict[str, Any], command: str) -> str:
    """The Markdown page of one device's results."""
    kind = result["device_kind"]
    cuda = kind == "cuda"
    batch = result["batch"]
    digits = 3 if cuda else 2
    workloads = result["workloads"]
    precisions = sorted({w["model_step"]["precision"] for w in workloads.values()})
    lines = [
        f"# Pipeline benchmark: training and evaluation throughput on {'a CUDA GPU' if cuda else 'the CPU'}",
        "",
        f"Generated by `{command}` on {result['date']}"
        + (" (a quick smoke run: tiny images and few cases, not representative)." if result["quick"] else "."),
        "",
        f"- Machine: {result['machine']}",
        f"- torch {result['torch']}, {result['threads']} CPU threads; load average (1, 5, 15 min) at the start"
        f" {', '.join(map(str, result['load_start']))}, at the end {', '.join(map(str, result['load_end']))};"
        f" 1-min load when each measurement started {', '.join(map(str, result['load_samples']))} (counting this"
        " benchmark's own threads)" + (f"; {result['load_note']}" if result.get("load_note") else ""),
        f"- Batch {batch}; precision of the runs: {', '.join(precisions) or '-'}; data from `$MEDSEG_DATA`"
        f" = {result['data_root']}; whole run {result['seconds'] / 60:.0f} min",
        "- New path: preprocessed cache (built cold at the start in an empty temporary `MEDSEG_CACHE`),"
        " `data.num_workers: auto`, batch augmentation on the device; old path: `data.cache: false`,"
        " `data.num_workers: 0`, every item decoded, prepared and resized in the training process (the old per-sample"
        " MONAI augmentation no longer exists: both paths augment batches on the device)",
        "",
    ]
    for message in result["skipped"]:
        lines.append(f"- Skipped: {message}")
    if result["skipped"]:
        lines.append("")
    if workloads:
        lines += [
            "## (a) Data pipeline alone (images/s)",
            "",
            "Cold: building the cache of every split (what the first run on the data does). Warm: the training"
            " DataLoader of `medseg train` over the cache (first batch not timed); + augmentation: with the transfer to"
            " the device and the batch augmentation of the recipe. Old: the same DataLoader without cache. Opening: the"
            " datasets of every split being built (the old path checks every case; the new path checks its entries).",
            "",
            "| Workload | cases cached | cold build | warm loader | warm + augmentation | old loader |"
            " old + augmentation | opening, new (s) | opening, old (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, w in workloads.items():
            new, old = w["data"]["new"], w["data"]["old"]
            lines.append(
                f"| {key} ({w['data']['image_size']} px) | {new['cached']} | {new['cold_ips']:.0f} |"
                f" {new['loader_ips']:.0f} | {new['pipeline_ips']:.0f} | {old['loader_ips']:.0f} |"
                f" {old['pipeline_ips']:.0f} | {new['open_s']:.1f} | {old['open_s']:.1f} |"
            )
        lines += [
            "",
            "## (b)-(d) Training throughput and the share of the model's speed the loop leaves it",
            "",
            "Model only (b): forward + loss + backward + optimiser step on synthetic tensors already on the device"
            " (mean of a measurement before and one after the training runs)."
            " End to end (c): `medseg.engine.train`, one epoch limited to the warm-up and timed batches, mean time per"
            " timed batch between the ends of consecutive batches (data wait, transfer, augmentation, step, logging)."
            " Ratio (d) = (c) images/s / (b) images/s.",
            "",
            "| Workload | steps (warm-up + timed) | model only: s/step | img/s | new: s/step | img/s | **ratio new** |"
            " old: s/step | img/s | ratio old |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, w in workloads.items():
            new, old = w["train"]["new"], w["train"]["old"]
            lines.append(
                f"| {key} | {w['warmup']} + {w['steps']} | {w['model_step']['step_s']:.{digits}f} |"
                f" {w['model_ips']:.1f} | {new['step_s']:.{digits}f} | {batch / new['step_s']:.1f} |"
                f" **{w['ratio']:.2f}** | {old['step_s']:.{digits}f} | {batch / old['step_s']:.1f} |"
                f" {w['ratio_old']:.2f} |"
            )
        lines += [
            "",
            "## (e) One training epoch",
            "",
            "Training: the timed step time x the batches of a full epoch (extrapolated from the timed batches, not"
            " run). Validation: the full validation pass of the same run (measured). Start-up: `train` called to its"
            " first batch (run folder, splits, datasets: the new path with the cache already built; a cold cache adds"
            " the cold build of (a)).",
            "",
            "| Workload | batches/epoch | new: training (s) | validation (s) | epoch (s) | start-up (s) |"
            " old: training (s) | validation (s) | epoch (s) | start-up (s) | old/new epoch |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, w in workloads.items():
            new, old = w["train"]["new"], w["train"]["old"]
            lines.append(
                f"| {key} | {new['epoch_batches']} | {new['step_s'] * new['epoch_batches']:.1f} |"
                f" {_fmt(new['val_s'], 1)} | {_epoch_s(new):.1f} | {new['startup_s']:.1f} |"
                f" {old['step_s'] * old['epoch_batches']:.1f} | {_fmt(old['val_s'], 1)} | {_epoch_s(old):.1f} |"
                f" {old['startup_s']:.1f} | {_epoch_s(old) / _epoch_s(new):.2f} |"
            )
    evaluation = result.get("evaluation")
    if evaluation:
        lines += _evaluation_lines(result, evaluation)
    lines += _goal_lines(result)
    return "\n".join(lines) + "\n"


def _trained_total(run: dict[str, Any], truth: float) -> float | None:
    """A path's evaluation time with a trained model's metrics (``truth`` seconds) in place of the measured ones;
    ``None`` where workers score beside the model (the two overlap, so no sum tells the wall time)."""
    t = run["timings"]
    return None if run["workers"] else t["total"] - t["metrics"] + truth


def _evaluation_lines(result: dict[str, Any], evaluation: dict[str, Any]) -> list[str]:
    runs = evaluation["runs"]
    new = runs["new"]
    truth = evaluation["truth_metrics_s"]
    checkpoint = evaluation["checkpoint"]
    lines = [
        "",
        f"## (e) Evaluation of the ACDC test split ({new['cases']} volumes, `{EVAL_PROTOCOL}`)",
        "",
        "`evaluate_run` (what `medseg evaluate` runs) on the last checkpoint of the new-path ACDC run of (c): the"
        f" recipe's model at {checkpoint['image_size']} px after {checkpoint['batches']} batches of"
        f" {result['batch']} (validation Dice {_fmt(checkpoint['val_dice'], 3)}); it scores {new['headline']}."
        " Model: the network's time; metrics: scoring (summed over the worker processes when there are any, which"
        " overlap with the model); load: reading and preparing the volumes; labels: probabilities to label maps and"
        " inputs onto the device; total: wall time of the whole evaluation (checkpoint, files and overlays"
        " included); speed-up: the old serial path's total over the row's (`eval_speedup` for the new path).",
        "",
        "So briefly trained, the model predicts background, or scattered noise, not hearts, and its metrics cost"
        " what such masks cost. A trained model predicts about the ground truth: scoring every test volume's ground"
        f" truth as its prediction takes {truth['cropped']:.1f} s (cropped surface distances, the current code) and"
        f" {truth['uncropped']:.1f} s (uncropped), at least what a trained model's metrics cost (a stray blob far"
        " from the heart widens the crop). The last two columns put those in place of the measured metrics"
        " (total - metrics + ground-truth metrics; not for a path whose workers score beside the model).",
        "",
        "| Path | device | precision | batch | workers | total (s) | model (s) | metrics (s) | load (s) | labels (s) |"
        " other (s) | speed-up | with a trained model's metrics: total (s) | speed-up |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "new": "new (medseg evaluate defaults)",
        "old": "old: serial CPU",
        "uncropped": "serial CPU, surface distances over whole arrays (the metrics before the crop)",
    }
    for name in EVAL_PATHS:
        run = runs[name]
        t = run["timings"]
        other = t["total"] - t["model"] - t["labels"] - t["wait"] - (0 if run["workers"] else t["metrics"] + t["load"])
        trained = run["trained_total"]
        lines.append(
            f"| {names[name]} | {run['device']} | {run['precision']} | {run['batch_size']} | {run['workers']} |"
            f" {t['total']:.1f} | {t['model']:.1f} | {t['metrics']:.1f} | {t['load']:.1f} | {t['labels']:.1f} |"
            f" {other:.1f} | {run['speedup']:.2f} | {_fmt(trained, 1)} |"
            f" {_fmt(runs['old']['trained_total'] / trained if trained else None)} |"
        )
    forward = evaluation["forward_s_per_slice"]
    lines += [
        "",
        f"The model alone on {new['device']} (random slices at the input size, seconds per slice): "
        + ", ".join(f"{name.replace('-mixed', '')} {seconds:.4f}" for name, seconds in forward.items())
        + ". The evaluation runs in float32 on the CPU (`eval.precision: auto`), where its numbers equal the serial"
        " path's; bf16 is what a GPU run uses.",
    ]
    return lines


def _goal_lines(result: dict[str, Any]) -> list[str]:
    """The goals of the issue, met or not, and what limits the figures."""
    kind = result["device_kind"]
    batch = result["batch"]
    lines = ["", "## Goals", ""]
    for key, w in result["workloads"].items():
        goal = RATIO_GOAL[kind]
        new = w["train"]["new"]
        overhead = new["step_s"] - w["model_step"]["step_s"]
        data = w["data"]["new"]
        loader = batch / data["loader_ips"]
        augment = batch / data["augment_ips"]
        met = "met" if w["ratio"] >= goal else "NOT met"
        workers = new["workers"]
        wait = (
            f"data loading {loader:.3f} s per batch in the training process"
            if not workers
            else f"data loading {loader:.3f} s per batch in {workers} workers (overlapping the step)"
        )
        lines.append(
            f"- (d) {key}: ratio {w['ratio']:.2f} (goal >= {goal}: {met}); the loop adds {overhead:+.3f} s per step to"
            f" the model's {w['model_step']['step_s']:.3f} s: {wait}, transfer + batch augmentation {augment:.3f} s,"
            f" the rest ({overhead - augment - (0 if workers else loader):+.3f} s) Lightning's loop, logging and the"
            " finite-loss check, and run-to-run noise"
        )
    evaluation = result.get("evaluation")
    if evaluation:
        runs = evaluation["runs"]
        goal = EVAL_SPEEDUP_GOAL[kind]
        speedup = result["eval_speedup"]
        new_t, old_t = runs["new"]["timings"], runs["old"]["timings"]
        met = "met" if speedup >= goal else "NOT met"
        lines.append(
            f"- ACDC evaluation: {old_t['total']:.1f} s on the old serial path, {new_t['total']:.1f} s on the new one:"
            f" {speedup:.2f}x (goal >= {goal:g}x: {met})"
        )
        trained = result.get("eval_speedup_trained_metrics")
        if trained is not None:
            met = "met" if trained >= goal else "NOT met"
            lines.append(
                f"- With a trained model's metrics (ground truth as prediction): {trained:.2f}x ({met}); against the"
                f" serial path with uncropped surface distances (the evaluation before the crop, batching and"
                f" workers): {result['eval_speedup_trained_vs_uncropped']:.2f}x"
            )
        if kind == "cuda":
            under = "met" if new_t["total"] < CUDA_EVAL_SECONDS_GOAL else "NOT met"
            lines.append(f"- ACDC evaluation under {CUDA_EVAL_SECONDS_GOAL:g} s on the GPU: {under}")
        lines.append(
            f"- Where the evaluation time goes: new path model {new_t['model']:.1f} s, metrics"
            f" {new_t['metrics']:.1f} s; old path model {old_t['model']:.1f} s, metrics {old_t['metrics']:.1f} s;"
            f" the model is {old_t['model'] / new_t['model']:.2f}x as fast batched on {runs['new']['device']} as"
            " one slice at a time on the CPU"
        )
        forward = evaluation["forward_s_per_slice"]
        batch = runs["new"]["batch_size"]
        fp32, bf16 = forward[f"32 batch {batch}"], forward[f"bf16-mixed batch {batch}"]
        lines.append(
            f"- The model alone at the evaluation's batch ({batch}): bf16 {fp32 / bf16:.2f}x as fast as float32;"
            f" batch 16 {forward['32 batch 1'] / forward['32 batch 16']:.2f}x as fast as batch 1 in float32"
        )
    return lines


# ----------------------------------------------------------------------------------------------------------------
# the run


def _machine(kind: str) -> str:
    host = f"{cpu_name()}, {os.cpu_count()} logical CPUs visible, {platform.system()} {platform.release()}"
    return f"{torch.cuda.get_device_name(0)}, host {host}" if kind == "cuda" else host


def _write_json(path: Path, kind: str, result: dict[str, Any]) -> None:
    """Put this device's object into the JSON file, keeping the other device's."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        content = {}
    content = content if isinstance(content, dict) else {}
    content[kind] = result
    path.write_text(json.dumps(content, indent=2) + "\n")


def _json_object(result: dict[str, Any]) -> dict[str, Any]:
    """The device's JSON object: headline figures first, raw numbers after."""
    headline = {f"ratio_{key}": round(w["ratio"], 4) for key, w in result["workloads"].items()}
    if "eval_speedup" in result:
        headline["eval_speedup"] = round(result["eval_speedup"], 4)
    return {**headline, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_SIZE} px, {QUICK_CASES} cases a split")
    parser.add_argument("--warmup", type=int, help="untimed training steps (default: CPU 3, GPU 5; quick 1)")
    parser.add_argument("--steps", type=int, help="timed training steps (default: CPU 5, GPU 15; quick 1)")
    parser.add_argument("--loader-batches", type=int, help="batches timed in (a) (default 20; quick 2)")
    parser.add_argument("--only", nargs="*", help="workload keys to run (unet_kvasir, resunetpp_kvasir, unet_acdc)")
    parser.add_argument("--out-dir", type=Path, help="folder of the page and JSON (results/; quick: a temp dir)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, spec = args.worker
        args.result.write_text(json.dumps(JOBS[kind](json.loads(spec))))
        return

    from medseg.runtime import prepare_environment, set_threads

    prepare_environment()  # the workers inherit OMP_WAIT_POLICY=PASSIVE and the thread count, as `medseg` sets them
    kind = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    cuda = kind == "cuda"
    quick = args.quick
    warmup = args.warmup or (1 if quick else 5 if cuda else 3)
    steps = args.steps or (1 if quick else 15 if cuda else 5)
    data_root = Path(os.environ.get("MEDSEG_DATA") or REPO.parent / "shared" / "data").resolve()
    os.environ["MEDSEG_DATA"] = str(data_root)
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="medseg-pipeline-")) if quick else RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    workloads = [w for w in WORKLOADS if not args.only or w.key in args.only]
    load_start = _load_average()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "device_kind": kind,
        "date": datetime.date.today().isoformat(),
        "machine": _machine(kind),
        "torch": torch.__version__,
        "threads": set_threads(None),
        "batch": 32 if cuda else 8,
        "quick": quick,
        "data_root": str(data_root),
        "load_start": load_start,
        "skipped": [],
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="medseg-bench-pipeline-") as temp:
        os.environ["MEDSEG_CACHE"] = str(Path(temp) / "cache")  # empty: each recipe's first use builds its cache
        log_dir = Path(temp) / "logs"
        log_dir.mkdir()
        base = {
            "device": kind,
            "batch": result["batch"],
            "quick": quick,
            "runs": str(Path(temp) / "runs"),
            "warmup": warmup,
            "steps": steps,
            "loader_batches": args.loader_batches or (2 if quick else 20),
        }
        warmed: set[str] = set()
        for workload in workloads:
            folder = data_root / workload.folder
            if not folder.is_dir():
                message = f"{workload.key}: no {folder} (set MEDSEG_DATA to the folder holding {workload.folder}/)"
                print(f"skipping {message}", file=sys.stderr)
                result["skipped"].append(message)
                continue
            if workload.folder not in warmed:
                _warm_page_cache(folder)
                warmed.add(workload.folder)
            print(f"{workload.key}:", file=sys.stderr, flush=True)
            spec = {**base, "recipe": workload.recipe, "label": workload.key}
            measured = _run_job("workload", spec, log_dir)
            result["workloads"][workload.key] = {"model": workload.model, "dataset": workload.dataset, **measured}
        acdc = result["workloads"].get(EVAL_WORKLOAD.key)
        if acdc is not None:
            print("evaluation:", file=sys.stderr, flush=True)
            new_run = acdc["train"]["new"]
            spec = {**base, "run_dir": new_run["run_dir"], "label": "acdc"}
            evaluation = _run_job("evaluate", spec, log_dir)
            evaluation["checkpoint"] = {
                "batches": new_run["batches_run"],
                "val_dice": new_run["val_dice"],
                "image_size": acdc["data"]["image_size"],
            }
            runs, truth = evaluation["runs"], evaluation["truth_metrics_s"]
            for name, run in runs.items():
                run["speedup"] = runs["old"]["timings"]["total"] / run["timings"]["total"]
                run["trained_total"] = _trained_total(run, truth["uncropped" if name == "uncropped" else "cropped"])
            result["evaluation"] = evaluation
            result["eval_speedup"] = runs["new"]["speedup"]
            if runs["new"]["trained_total"] is not None:
                result["eval_speedup_trained_metrics"] = runs["old"]["trained_total"] / runs["new"]["trained_total"]
                result["eval_speedup_trained_vs_uncropped"] = (
                    runs["uncropped"]["trained_total"] / runs["new"]["trained_total"]
                )
        elif not args.only or EVAL_WORKLOAD.key in args.only:
            result["skipped"].append("ACDC evaluation: needs the ACDC workload")
    result["load_end"] = _load_average()
    result["load_samples"] = LOAD_SAMPLES
    busiest_quiet = min(LOAD_SAMPLES, default=load_start[0])  # the samples count this benchmark's own threads
    if busiest_quiet >= result["threads"] + 0.5:
        result["load_note"] = (
            f"the machine was busy: even the quietest measurement started at a 1-min load of {busiest_quiet:.1f} with"
            f" {result['threads']} threads of its own, so every CPU figure here is slower than on a quiet machine"
        )
    result["seconds"] = round(time.perf_counter() - started)
    command = " ".join(["python benchmarks/bench_pipeline.py", *sys.argv[1:]])
    page = report(result, command)
    name = "pipeline-cuda" if cuda else "pipeline"
    (out_dir / f"{name}.md").write_text(page)
    _write_json(out_dir / "pipeline.json", kind, _json_object(result))
    print(page)
    print(f"wrote {out_dir / f'{name}.md'} and {out_dir / 'pipeline.json'} ({result['seconds']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
