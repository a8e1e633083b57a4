"""Training-step time and peak memory of every registered model on CPU (or a CUDA GPU), plus TA-MoSC's overhead.

Run from the repository root (takes a long while on 2 threads: each configuration builds its model, runs a warm-up
step and up to ``--steps`` timed steps)::

    .venv/bin/python benchmarks/bench_models.py
    .venv/bin/python benchmarks/bench_models.py --models vmunet asc_seg --steps 2   # a subset
    python benchmarks/bench_models.py --device cuda --steps 20   # on a GPU machine -> results/models-cuda.md

Workload: batch 8 of 256 x 256 images, each model in its reference configuration (``default_kwargs`` of the
registry, ``medseg models``), plus ``unet`` with ``skip=tamosc``. One training step = forward, loss, backward and an
AdamW step; the loss is medseg's supervised Dice + (B)CE on random masks, plus the model's auxiliary losses
(TA-MoSC's balance loss) and, for models with deep-supervision heads (ASC-Seg), the same loss on every auxiliary
head (:class:`medseg.objectives.deep_supervision.DeepSupervisionTerm`). Precisions: float32 and bfloat16 autocast
(forward and loss under ``torch.autocast("cpu", torch.bfloat16)``, parameters and optimiser in float32).

Each (model, precision) pair runs in a fresh subprocess with 2 threads (``torch.set_num_threads`` and
``OMP_NUM_THREADS``): one untimed warm-up step, then timed steps until ``--steps`` are done or ``--budget`` seconds
have passed (at least one); the time is the median of the timed steps, and the table says how many there were.
Peak memory is the subprocess's maximum resident set size (``resource.getrusage``) at the end, so it includes the
Python and torch runtime (the ``import`` baseline is shown separately). With ``--device cuda`` the model and batch
live on the GPU, bf16 autocast is CUDA's, every step ends with ``torch.cuda.synchronize()`` before the clock is read,
and the memory column is the peak of ``torch.cuda.max_memory_allocated``. Results go to
``benchmarks/results/models.md`` (``models-cuda.md`` on a GPU) and to stdout; the page records the machine, the
torch version and the load average (other processes on a shared machine slow multi-threaded CPU runs down a lot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name

THREADS = 2
BATCH, SIZE = 8, 256
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRECISIONS = ("fp32", "bf16")
OVERHEAD_PAIRS = (("utanet", "resnet34_unet"), ("unet+tamosc", "unet"))


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _model_configs() -> list[dict[str, Any]]:
    """Every registered model in its reference configuration, plus U-Net with TA-MoSC skips."""
    from medseg.models import list_models, model_info

    configs = [
        {"label": name, "name": name, "kwargs": dict(model_info(name).default_kwargs or {})} for name in list_models()
    ]
    unet = next(c for c in configs if c["name"] == "unet")
    configs.append({"label": "unet+tamosc", "name": "unet", "kwargs": {**unet["kwargs"], "skip": "tamosc"}})
    return configs


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one (model, precision) in this process: step times (s) and peak memory (MB)."""
    torch.set_num_threads(THREADS)
    device = torch.device(config["device"])
    cuda = device.type == "cuda"
    from medseg.models import create_model
    from medseg.objectives import DiceCELoss, Objective, SegmentationTerm
    from medseg.objectives.deep_supervision import DeepSupervisionTerm

    baseline = _max_rss_mb()
    torch.manual_seed(0)
    model = create_model(config["name"], **config["kwargs"]).train().to(device)
    num_classes = model.num_classes
    binary = num_classes == 1
    batch_size, size = config["batch"], config["size"]
    images = torch.randn(batch_size, model.in_channels, size, size, device=device)
    masks = torch.randint(0, 2 if binary else num_classes, (batch_size, size, size), device=device)
    batch = {"image": images, "mask": masks}
    loss = DiceCELoss(binary)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    bf16 = config["precision"] == "bf16"
    objective: Objective | None = None

    def step() -> float:
        nonlocal objective
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model.forward_features(images)
            if objective is None:
                terms = {"seg": (1.0, SegmentationTerm(loss))}
                if output.aux_logits:
                    weights = [0.0] + [1.0] * len(output.aux_logits)
                    terms["deep_supervision"] = (1.0, DeepSupervisionTerm(loss, weights))
                objective = Objective(terms)
            total, _ = objective(output, batch)
        total.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    warmup = step()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < config["steps"] and (not times or time.perf_counter() - started < config["budget"]):
        times.append(step())
    return {
        "warmup_s": warmup,
        "step_s": statistics.median(times),
        "steps": len(times),
        "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _max_rss_mb(),
        "baseline_mb": baseline,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _run_in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def report(results: dict[str, dict[str, dict[str, Any]]], args: argparse.Namespace, loads: tuple[str, str]) -> str:
    """Render the Markdown results page from ``results[label][precision]``."""
    cuda = args.device == "cuda"
    memory = "peak GPU memory" if cuda else "peak RSS"
    digits = 4 if cuda else 2
    if cuda:
        machine = f"{torch.cuda.get_device_name(0)}, host {cpu_name()}"
        memory_note = (
            "- Peak GPU memory: `torch.cuda.max_memory_allocated` at the end of the run (model, optimiser, activations)"
        )
    else:
        machine = f"{cpu_name()}, {os.cpu_count()} logical CPUs visible, {platform.system()} {platform.release()}"
        memory_note = (
            "- Peak RSS: maximum resident set size of the fresh subprocess (includes the Python + torch runtime, about"
            " the `import` column)"
        )
    lines = [
        f"# Model benchmark: one training step on {'a CUDA GPU' if cuda else 'CPU'}",
        "",
        f"Generated by `python benchmarks/bench_models.py --device {args.device} --steps {args.steps}` on "
        f"{datetime.date.today().isoformat()}.",
        "",
        f"- Machine: {machine}",
        f"- torch {torch.__version__}, {THREADS} threads per run; load average (1, 5, 15 min) at the start {loads[0]},"
        f" at the end {loads[1]} (a shared machine: other processes slow 2-thread runs down)",
        f"- Workload: batch {args.batch}, {args.size}x{args.size}, reference configuration of each model;"
        " step = forward + Dice/(B)CE loss (+ model auxiliary losses, + deep supervision on auxiliary heads)"
        " + backward + AdamW step",
        f"- Time: median of the timed steps after one warm-up step; at most {args.steps} steps or until"
        f" {args.budget:.0f} s"
        " of timed steps have passed (the `steps` column). bf16 = forward and loss under bfloat16 autocast",
        memory_note,
        "",
        f"| Model | Params | fp32 step (s) | steps | fp32 {memory} (MB) | bf16 step (s) | steps | bf16 {memory} (MB) |"
        " import RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, by_precision in results.items():
        cells, params, base = [], "", ""
        for precision in PRECISIONS:
            result = by_precision.get(precision)
            if result is None:
                cells += ["-", "", "-"]
            elif "error" in result:
                cells += [f"failed: {result['error']}", "", ""]
            else:
                cells += [f"{result['step_s']:.{digits}f}", str(result["steps"]), f"{result['peak_mb']:.0f}"]
                params, base = f"{result['params'] / 1e6:.2f} M", f"{result['baseline_mb']:.0f}"
        lines.append(f"| {label} | {params} | " + " | ".join(cells) + f" | {base} |")
    overhead = []
    for with_skip, plain in OVERHEAD_PAIRS:
        for precision in PRECISIONS:
            a, b = results.get(with_skip, {}).get(precision), results.get(plain, {}).get(precision)
            if a and b and "error" not in a and "error" not in b:
                overhead.append(
                    f"| {with_skip} vs {plain} | {precision} | {a['step_s'] - b['step_s']:+.{digits}f} s"
                    f" ({a['step_s'] / b['step_s'] - 1:+.0%}) | {a['peak_mb'] - b['peak_mb']:+.0f} MB"
                    f" ({a['peak_mb'] / b['peak_mb'] - 1:+.0%}) |"
                )
    if overhead:
        lines += [
            "",
            "## TA-MoSC overhead",
            "",
            f"| Pair | Precision | Step time | {memory.capitalize()} |",
            "|---|---|---:|---:|",
            *overhead,
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="labels to run (default: all, plus unet+tamosc)")
    parser.add_argument("--precisions", nargs="*", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (at most)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed steps per configuration")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size")
    parser.add_argument("--size", type=int, default=SIZE, help="image side in pixels")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--output", type=Path, help="Markdown file to write (default: results/models[-cuda].md)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    configs = _model_configs()
    if args.models:
        unknown = sorted(set(args.models) - {c["label"] for c in configs})
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; valid: {', '.join(c['label'] for c in configs)}")
        configs = [c for c in configs if c["label"] in args.models]
    start_load = _load()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for config in configs:
        for precision in args.precisions:
            print(f"running {config['label']} ({precision}) ...", file=sys.stderr, flush=True)
            run = {**config, "precision": precision, "steps": args.steps, "budget": args.budget, "device": args.device}
            run.update(batch=args.batch, size=args.size)
            results.setdefault(config["label"], {})[precision] = _run_in_subprocess(run)
    page = report(results, args, (start_load, _load()))
    args.output = args.output or RESULTS_DIR / ("models-cuda.md" if args.device == "cuda" else "models.md")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
