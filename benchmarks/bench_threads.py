"""What the OpenMP wait policy and the thread count cost, on a quiet machine and beside one busy process.

Run from the repository root (about 2 minutes, plus about 5 with ``--demo``)::

    .venv/bin/python benchmarks/bench_threads.py          # -> benchmarks/results/threads.md
    .venv/bin/python benchmarks/bench_threads.py --demo   # also times `medseg demo`, quiet and contended

Workload (the demo's model and batch): U-Net with base 16 channels, batch 16 of 96 x 96 RGB images, one training
step = forward, Dice + BCE loss, backward and an AdamW step, in float32 and under bfloat16 autocast. Each setting
runs in a fresh subprocess (the OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when torch loads it): two untimed
warm-up steps, then the median of ``--steps`` timed steps. Settings: the OpenMP default wait policy (the variable
unset: threads spin before they sleep) against ``OMP_WAIT_POLICY=PASSIVE`` (what ``medseg`` sets), with 1 and 2
threads, on a quiet machine and with one CPU-bound competitor (a Python busy loop in another process).

``--demo`` times the whole ``medseg demo`` (16 epochs of the demo U-Net, then the evaluation) with medseg's
defaults, quiet and beside the same competitor; the README quotes these figures. The page records the load
average: other work on a shared machine changes every number here.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "threads.md"
REPO = Path(__file__).resolve().parents[1]
BATCH, SIZE = 16, 96
POLICIES = ("default", "PASSIVE")
THREAD_COUNTS = (2, 1)
PRECISIONS = ("fp32", "bf16")


def _worker(precision: str, steps: int) -> None:
    """Time training steps in this process and print the median in seconds."""
    import torch

    from medseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", in_channels=3, num_classes=1, base_channels=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.rand(BATCH, 3, SIZE, SIZE)
    masks = (torch.rand(BATCH, 1, SIZE, SIZE) > 0.5).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(images).float()
        probs = logits.sigmoid()
        dice = 1 - (2 * (probs * masks).sum() + 1) / (probs.sum() + masks.sum() + 1)
        loss = dice + torch.nn.functional.binary_cross_entropy_with_logits(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    print(statistics.median(times))


@contextmanager
def _competitor(active: bool) -> Any:
    """One CPU-bound process beside the measurement (a Python busy loop), or nothing."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if active else None
    try:
        if process:
            time.sleep(1.0)
        yield
    finally:
        if process:
            process.kill()
            process.wait()


def _environment(policy: str, threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _step_time(policy: str, threads: int, precision: str, steps: int) -> float:
    command = [sys.executable, __file__, "--worker", precision, "--steps", str(steps)]
    output = subprocess.run(command, env=_environment(policy, threads), capture_output=True, text=True, check=True)
    return float(output.stdout.strip().splitlines()[-1])


def _demo_seconds() -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            [str(Path(sys.executable).with_name("medseg")), "demo", "--output-dir", folder],
            env=_environment("default", None),  # medseg's own defaults decide
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def main() -> None:
    """Measure and write ``benchmarks/results/threads.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--demo", action="store_true", help="also time `medseg demo`, quiet and contended")
    parser.add_argument("--worker", choices=PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.steps)
        return

    load_before = os.getloadavg()
    rows = []
    for contended in (False, True):
        with _competitor(contended):
            for threads in THREAD_COUNTS:
                for policy in POLICIES:
                    times = {p: _step_time(policy, threads, p, args.steps) for p in PRECISIONS}
                    rows.append((contended, threads, policy, times))
                    print(contended, threads, policy, times, flush=True)
    demo: dict[bool, float] = {}
    if args.demo:
        for contended in (False, True):
            with _competitor(contended):
                demo[contended] = _demo_seconds()
                print("demo", contended, demo[contended], flush=True)

    import torch

    quiet = {(t, p): times for c, t, p, times in rows if not c}
    busy = {(t, p): times for c, t, p, times in rows if c}
    lines = [
        "# OpenMP wait policy and thread count (CPU)",
        "",
        f"Written by `benchmarks/bench_threads.py{' --demo' if args.demo else ''}` on "
        f"{datetime.date.today().isoformat()}: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"Python {platform.python_version()}, load average before {load_before[0]:.2f}.",
        "",
        f"One training step of the demo U-Net (base 16, batch {BATCH}, {SIZE} px), median of {args.steps} steps "
        "after 2 warm-up steps, each setting in a fresh process. *Contended*: one CPU-bound Python busy loop runs "
        "beside it. *default*: `OMP_WAIT_POLICY` unset (OpenMP threads spin before sleeping); *PASSIVE*: what the "
        "`medseg` command sets unless the user chose a policy.",
        "",
        "| machine | threads | wait policy | fp32 step (s) | bf16 step (s) |",
        "|---|---|---|---|---|",
    ]
    for contended, threads, policy, times in rows:
        state = "contended" if contended else "quiet"
        lines.append(f"| {state} | {threads} | {policy} | {times['fp32']:.3f} | {times['bf16']:.3f} |")
    lines += ["", "Ratios (PASSIVE time / default time, below 1 = PASSIVE faster):", ""]
    for label, table in (("quiet", quiet), ("contended", busy)):
        for threads in THREAD_COUNTS:
            ratio = {p: table[(threads, "PASSIVE")][p] / table[(threads, "default")][p] for p in PRECISIONS}
            lines.append(f"- {label}, {threads} threads: fp32 {ratio['fp32']:.2f}, bf16 {ratio['bf16']:.2f}")
    if demo:
        lines += [
            "",
            "`medseg demo` with medseg's defaults (passive wait policy, threads = the CPUs this process may use), "
            "install excluded:",
            "",
            f"- quiet: {demo[False]:.0f} s",
            f"- beside one CPU-bound process: {demo[True]:.0f} s",
        ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
