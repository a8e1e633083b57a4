"""U-Net, U-Net + SelfReg and U-Net + ReSeg on ACDC: a controlled, CPU-sized comparison (not a parity run).

The three methods share everything but the training objective: the U-Net of ``configs/unet-acdc.yaml`` (milesial
layout, transposed convolutions, one input channel) with a reduced width, its SGD + poly schedule, augmentation,
split and seed, trained on ``$MEDSEG_DATA/acdc-h5`` (default ``../shared/data``) at a small image size:

* **U-Net**: 0.5 CE + 0.5 Dice.
* **U-Net + SelfReg** (SelfReg-UNet, MICCAI 2024): + the SelfReg term with the ACDC release's single λ = 0.1
  (``selfreg``), or with the paper's two weights λ1 = λ2 = 0.015 (``selfreg-paper``).
* **U-Net + ReSeg** (ReSeg-UNet, MICCAI 2025): a reconstruction teacher (label map -> image, 0.6 MSE + 0.4 L1,
  its last checkpoint) trained for the same number of epochs, then segmentation + 0.035 · ReSeg alignment against the
  frozen teacher; ReSeg therefore trains twice as many epochs in total (the teacher's are reported separately).

Two optimisation settings (``--optimizer``): ``sgd`` is the TransUNet/ReSeg ACDC recipe of ``unet-acdc.yaml`` (SGD,
momentum 0.9, poly decay, ``--lr``), ``adamw`` is SelfReg's ACDC recipe (AdamW lr 1e-4, weight decay 1e-4, constant).

Every run is evaluated on the test volumes with the ``transunet_acdc`` protocol (per volume, slice by slice at the
training size, medpy Dice and HD95 in voxels with TransUNet's empty-mask conventions), using the checkpoint with the
best validation Dice (``--checkpoint last`` for the final epoch). Run from the repository root::

    .venv/bin/python benchmarks/acdc_comparison.py [--epochs 20] [--image-size 96] [--base-channels 16] \
        [--methods unet selfreg selfreg-paper reseg] [--optimizer sgd|adamw] [--seeds 1234 ...] [--limit N] \
        [--threads 2] [--workers 0] [--jobs 1]

``--jobs N`` trains N runs at once in separate processes (useful on a GPU machine, where one small run leaves the
device mostly idle; pointless on two CPU cores).

It writes ``benchmarks/results/acdc_comparison.md`` (``--results`` to change): the protocol, seeds, sizes and, per
method and seed, the mean and per-class Dice, HD95, best validation Dice and training time; the page is rewritten after
every finished run (marked partial until the last). Measured on two CPU cores at 96 px, base width 16: about 10 s of
training per epoch for one run on 2 threads, 13.5 s per run with ``--jobs 2 --threads 1``; the 12-epoch, three-seed
page ``results/acdc_comparison.md`` took 24 minutes in all; ``--epochs 1 --image-size 32 --base-channels 4
--limit 6`` checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from machine import cpu_name

from medseg.config import load_config
from medseg.evaluation import evaluate_run
from medseg.recipes import train_experiment

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "unet-acdc.yaml"
RESULTS = REPO / "benchmarks" / "results" / "acdc_comparison.md"
PROTOCOL = "transunet_acdc"
CLASSES = ("RV", "Myo", "LV")


@dataclass(frozen=True)
class Method:
    """One row group of the comparison.

    Attributes:
        name: shown in the table.
        slug: run-name part.
        overrides: what this method adds to the shared configuration.
    """

    name: str
    slug: str
    overrides: tuple[str, ...]


METHODS = (
    Method("U-Net", "unet", ()),
    Method("U-Net + SelfReg (λ 0.1)", "selfreg", ("loss.terms=[{name: selfreg, params: {single_lambda: 0.1}}]",)),
    Method(
        "U-Net + SelfReg (λ1 = λ2 = 0.015)",
        "selfreg-paper",
        ("loss.terms=[{name: selfreg, params: {lambda_ifd: 0.015, lambda_scr: 0.015}}]",),
    ),
    Method(
        "U-Net + ReSeg",
        "reseg",
        (
            "stages=[{name: teacher, overrides: {train.task: reconstruction}}, {name: student, teacher_from: teacher, "
            "overrides: {loss.terms: [{name: reseg, weight: 0.035}]}}]",
        ),
    ),
)


def shared_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The settings every method shares.

    Args:
        args: the command line.
        seed: training seed.

    Returns:
        Dotted overrides of ``configs/unet-acdc.yaml``.
    """
    overrides = [
        f"output_dir={args.output}",
        f"train.epochs={args.epochs}",
        f"train.seed={seed}",
        f"train.threads={args.threads}",
        "train.progress_bar=false",
        f"data.image_size={args.image_size}",
        f"data.batch_size={args.batch_size}",
        f"data.num_workers={args.workers}",
        f"model.params.base_channels={args.base_channels}",
        "eval.overlays=0",
    ]
    if args.optimizer == "adamw":
        overrides += ["optim={name: adamw, lr: 0.0001, weight_decay: 0.0001}", "scheduler.name=none"]
    else:
        overrides.append(f"optim.lr={args.lr}")
    if args.limit:
        overrides.append(f"data.limit={args.limit}")
    return overrides


def optimizer_text(args: argparse.Namespace) -> str:
    """The optimisation setting in words, for the results page."""
    if args.optimizer == "adamw":
        return "AdamW lr 1e-4 wd 1e-4, constant (SelfReg's ACDC recipe)"
    return f"SGD lr {args.lr} momentum 0.9 wd 1e-4, poly 0.9"


def run(method: Method, seed: int, args: argparse.Namespace) -> dict[str, object]:
    """Train and evaluate one method with one seed (in the calling process).

    Args:
        method: the method.
        seed: training seed.
        args: the command line.

    Returns:
        The row of the results table.
    """
    overrides = [*shared_overrides(args, seed), f"name=acdc-{method.slug}-s{seed}", *method.overrides]
    torch.set_num_threads(args.threads)
    config = load_config(RECIPE, overrides)
    started = time.perf_counter()
    result = train_experiment(config)
    minutes = (time.perf_counter() - started) / 60
    evaluation = evaluate_run(result.run_dir, "test", args.checkpoint, PROTOCOL, progress=False)
    summary = evaluation.summary
    splits = json.loads((result.run_dir / "splits.json").read_text())["splits"]
    return {
        "method": method.name,
        "seed": seed,
        "dice": summary["metrics"]["dice"]["mean"],
        "hd95": summary["metrics"]["hd95"]["mean"],
        **{name: summary["per_class"][name]["dice"]["mean"] for name in CLASSES},
        "best_val_dice": result.best_val_dice,
        "minutes": minutes,
        "sizes": {name: len(ids) for name, ids in splits.items()},
        "test_volumes": summary["num_cases"],
    }


def report(rows: list[dict[str, object]], args: argparse.Namespace, total: int) -> str:
    """The Markdown results page.

    Args:
        rows: one row per finished method and seed.
        args: the command line.
        total: the number of runs asked for (the page says so when fewer have finished).

    Returns:
        The page.
    """
    sizes = rows[0]["sizes"]
    lines = [
        "# ACDC: U-Net vs U-Net + SelfReg vs U-Net + ReSeg",
        "",
        f"Generated by `.venv/bin/python benchmarks/acdc_comparison.py --epochs {args.epochs} --image-size "
        f"{args.image_size} --base-channels {args.base_channels} --batch-size {args.batch_size} --optimizer "
        f"{args.optimizer} --lr {args.lr} --methods {' '.join(args.methods)} --seeds "
        f"{' '.join(map(str, args.seeds))}{f' --limit {args.limit}' if args.limit else ''} --checkpoint "
        f"{args.checkpoint}` on {device_text()}, torch {torch.__version__}, {args.threads} thread(s) per run, "
        f"{args.jobs} run(s) at a time.",
        "",
        "**Not a parity run**: small images, a narrow network and few epochs, to compare the objectives under one "
        "setting, not to reproduce the papers' numbers.",
        "",
        *(
            [f"**Partial**: {len(rows)} of {total} runs had finished when this page was written.", ""]
            if len(rows) < total
            else []
        ),
        f"- Shared setting: `configs/unet-acdc.yaml` (U-Net, transposed convolutions, 1 input channel) with base width "
        f"{args.base_channels}, {args.image_size} px, batch {args.batch_size}, {optimizer_text(args)}, "
        f"{args.epochs} epochs, 0.5 CE + 0.5 Dice, split seed 0, training seeds "
        f"{', '.join(map(str, args.seeds))}.",
        "- SelfReg: + SelfReg term (IFD + SCR), either one λ = 0.1 on the sum (the ACDC release) or the paper's "
        "λ1 = λ2 = 0.015.",
        f"- ReSeg: a reconstruction teacher (label map -> image, 0.6 MSE + 0.4 L1, last checkpoint) trained for "
        f"{args.epochs} epochs first, then + 0.035 · ReSeg alignment against it (teacher BatchNorm in eval mode).",
        f"- Data: ACDC ({args.limit or 'all'} cases per split): {sizes.get('train', 0)} training slices, "
        f"{sizes.get('val', 0)} validation volumes, {rows[0]['test_volumes']} test volumes.",
        f"- Evaluation: `{PROTOCOL}` on the test volumes (per volume, slice by slice at {args.image_size} px, zoom "
        "order 3 in and 0 out; medpy Dice and HD95 in voxels; a prediction on an absent structure scores (1, 0), a "
        "miss (0, 0); mean over classes of the per-class means over volumes); checkpoint: "
        f"{'best validation Dice' if args.checkpoint == 'best' else 'final epoch'}.",
        "",
        "| method | seed | mean Dice | RV | Myo | LV | HD95 (voxels) | best val Dice | training minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['seed']} | {row['dice']:.4f} | {row['RV']:.4f} | {row['Myo']:.4f} | "
            f"{row['LV']:.4f} | {row['hd95']:.2f} | {row['best_val_dice']:.4f} | {row['minutes']:.1f} |"
        )
    if len(args.seeds) > 1:
        lines += ["", "Mean over seeds:", "", "| method | mean Dice | HD95 |", "|---|---|---|"]
        for method in selected_methods(args):
            group = [row for row in rows if row["method"] == method.name]
            if group:
                dice = statistics.mean(float(row["dice"]) for row in group)
                hd95 = statistics.mean(float(row["hd95"]) for row in group)
                lines.append(f"| {method.name} | {dice:.4f} | {hd95:.2f} |")
    return "\n".join(lines) + "\n"


def device_text() -> str:
    """The machine the runs train on, in words."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} ({platform.machine()})"
    return cpu_name()


def selected_methods(args: argparse.Namespace) -> list[Method]:
    """The methods named by ``--methods``, in the table's order."""
    return [method for method in METHODS if method.slug in args.methods]


def run_all(args: argparse.Namespace, publish: Callable[[list[dict[str, object]], int], None]) -> None:
    """Train and evaluate every selected method and seed, ``args.jobs`` at a time.

    Args:
        args: the command line.
        publish: called after every finished run with the rows so far (method then seed order) and the number of
            runs in all, so that a comparison stopped early still leaves its finished rows.
    """
    tasks = [(method, seed) for method in selected_methods(args) for seed in args.seeds]
    rows: dict[int, dict[str, object]] = {}

    def finished(index: int, row: dict[str, object]) -> None:
        rows[index] = row
        publish([rows[i] for i in sorted(rows)], len(tasks))

    if args.jobs == 1:
        for index, (method, seed) in enumerate(tasks):
            finished(index, run(method, seed, args))
        return
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run, method, seed, args): index for index, (method, seed) in enumerate(tasks)}
        for future in as_completed(futures):
            finished(futures[future], future.result())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=96, help="a multiple of 16")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD base learning rate (the recipe's is 0.01)")
    parser.add_argument("--methods", nargs="+", choices=[m.slug for m in METHODS], default=[m.slug for m in METHODS])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument("--limit", type=int, default=None, help="at most this many cases per split")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--output", type=Path, default=Path("/tmp/medseg-acdc-comparison"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    pages: list[str] = []

    def publish(rows: list[dict[str, object]], total: int) -> None:
        pages.append(report(rows, args, total))
        args.results.write_text(pages[-1])

    run_all(args, publish)
    print(pages[-1])


if __name__ == "__main__":
    main()
