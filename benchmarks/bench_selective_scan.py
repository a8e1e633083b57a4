"""Time and peak memory of one Mamba block, forward + backward, on CPU: medseg's chunked scan against mambapy.

Run from the repository root::

    .venv/bin/python benchmarks/bench_selective_scan.py

Workload (the "Mamba on every machine" issue): batch 8, L = 3136 tokens (a 56x56 map), d_model = 96 (so
d_inner = 192 with expand 2), N = 16; loss = mean of the squared output, then backward. Configurations:

* ``mambapy``: ``mambapy.mamba.MambaBlock`` (pure-PyTorch Mamba, Blelloch scan over the whole padded sequence).
* ``medseg T=...``: :class:`medseg.models.layers.mamba.Mamba` with the chunked scan at several chunk sizes.
* ``medseg reference``: the same block with the sequential reference scan (autograd through a loop over L), and
  mambapy and medseg again, at batch 1 only, for scale.

Each configuration runs in its own subprocess with 2 threads: a tiny warm-up (so library start-up is not counted),
then one untimed and ``--repeats`` timed forward + backward passes. Time is the median; peak memory is the process's
maximum resident set size (``resource.getrusage``) minus its value after the warm-up. The Markdown table goes to
``benchmarks/results/selective_scan.md`` and to stdout.
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
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from machine import cpu_name

THREADS = 2
BATCH, LENGTH, D_MODEL = 8, 3136, 96
CHUNK_SIZES = (32, 64, 128, 256)
RESULTS = Path(__file__).resolve().parent / "results" / "selective_scan.md"


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build(kind: str, chunk_size: int) -> torch.nn.Module:
    if kind == "mambapy":
        from mambapy.mamba import MambaBlock, MambaConfig

        return MambaBlock(MambaConfig(d_model=D_MODEL, n_layers=1))
    from medseg.models.layers import mamba as mamba_module

    if kind == "reference":
        from medseg.models.layers.selective_scan import selective_scan_ref

        def reference_scan(*args: Any, chunk_size: int, **kwargs: Any) -> torch.Tensor:
            return selective_scan_ref(*args, **kwargs)

        mamba_module.selective_scan = reference_scan  # this worker process only
    return mamba_module.Mamba(D_MODEL, chunk_size=chunk_size)


def _step(block: torch.nn.Module, x: torch.Tensor) -> tuple[float, float]:
    start = time.perf_counter()
    y = block(x)
    middle = time.perf_counter()
    y.square().mean().backward()
    return middle - start, time.perf_counter() - middle


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this process; return times (s) and the peak-RSS increase (MB)."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    block = _build(config["kind"], config["chunk_size"])
    _step(block, torch.randn(1, 16, D_MODEL))
    block.zero_grad(set_to_none=True)
    x = torch.randn(config["batch"], LENGTH, D_MODEL, requires_grad=True)
    baseline = _max_rss_mb()
    _step(block, x)
    forward, backward = [], []
    for _ in range(config["repeats"]):
        block.zero_grad(set_to_none=True)
        x.grad = None
        f, b = _step(block, x)
        forward.append(f)
        backward.append(b)
    totals = [f + b for f, b in zip(forward, backward, strict=True)]
    return {
        "forward_s": statistics.median(forward),
        "backward_s": statistics.median(backward),
        "total_s": statistics.median(totals),
        "peak_mb": _max_rss_mb() - baseline,
    }


def _configs(repeats: int) -> list[dict[str, Any]]:
    configs = [{"label": "mambapy (pscan)", "kind": "mambapy", "batch": BATCH, "chunk_size": 0}]
    configs += [
        {"label": f"medseg chunked T={t}", "kind": "medseg", "batch": BATCH, "chunk_size": t} for t in CHUNK_SIZES
    ]
    configs += [
        {"label": "mambapy (pscan)", "kind": "mambapy", "batch": 1, "chunk_size": 0},
        {"label": "medseg chunked T=64", "kind": "medseg", "batch": 1, "chunk_size": 64},
        {"label": "medseg sequential reference", "kind": "reference", "batch": 1, "chunk_size": 64},
    ]
    for config in configs:
        config["repeats"] = repeats
    return configs


def _run_in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(rows: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """Render the Markdown results page."""
    anchor = next((r for c, r in rows if c["kind"] == "mambapy" and c["batch"] == BATCH and "error" not in r), None)
    lines = [
        "# Selective scan benchmark: one Mamba block, forward + backward, CPU",
        "",
        f"Generated by `.venv/bin/python benchmarks/bench_selective_scan.py` on {datetime.date.today().isoformat()}.",
        "",
        f"- Machine: {cpu_name()}, {os.cpu_count()} logical CPUs visible, {platform.system()} {platform.release()}",
        f"- torch {torch.__version__}, {THREADS} threads; mambapy {_version('mambapy')}",
        f"- Workload: L = {LENGTH} (56x56), d_model = {D_MODEL} (d_inner = {2 * D_MODEL}), N = 16, float32,"
        " loss = mean(y²); each configuration in a fresh subprocess",
        "- Time: median of the timed passes after one untimed pass. Peak memory: max RSS increase over the"
        " process's RSS after a tiny warm-up (model and input already allocated)",
        "",
        "| Configuration | Batch | Forward (s) | Backward (s) | Forward + backward (s) | Peak memory (MB) |"
        " vs mambapy: time | vs mambapy: memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, result in rows:
        if "error" in result:
            lines.append(f"| {config['label']} | {config['batch']} | failed: {result['error']} | | | | | |")
            continue
        ratio_t = ratio_m = ""
        if anchor is not None and config["batch"] == BATCH:
            ratio_t = f"{result['total_s'] / anchor['total_s']:.2f}x"
            ratio_m = f"{result['peak_mb'] / anchor['peak_mb']:.2f}x"
        lines.append(
            f"| {config['label']} | {config['batch']} | {result['forward_s']:.3f} | {result['backward_s']:.3f} |"
            f" {result['total_s']:.3f} | {result['peak_mb']:.0f} | {ratio_t} | {ratio_m} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per configuration")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    rows = []
    for config in _configs(args.repeats):
        print(f"running {config['label']} (batch {config['batch']}) ...", file=sys.stderr, flush=True)
        rows.append((config, _run_in_subprocess(config)))
    page = report(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
