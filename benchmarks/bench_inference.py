"""Inference on CPU: PyTorch eager, TorchScript and ONNX Runtime side by side for every registered model, the import
time of ``medseg.load`` and the images per second of ``medseg predict`` on Kvasir-SEG.

Run from the repository root (about 15 minutes on 2 threads)::

    .venv/bin/python benchmarks/bench_inference.py                    # -> benchmarks/results/inference.md
    .venv/bin/python benchmarks/bench_inference.py --models unet vmunet --no-predict   # a subset

Models: each registered model in its reference configuration (``default_kwargs`` of the registry) with one output
channel (a binary task), at 256 x 256 (224 x 224 for ``swin_unet`` and ``transunet``, their reference input size;
``swin_unet``'s 7 x 7 windows need it). Each model runs in a fresh subprocess with 2 threads (``OMP_NUM_THREADS``,
``torch.set_num_threads``, ONNX Runtime's intra-op threads), none of which spin while they wait (the passive
OpenMP wait policy and ONNX Runtime's ``allow_spinning=0``, as the ``medseg`` command sets them). The
subprocess exports the model with ``medseg.inference.export.export_model`` (TorchScript and ONNX, timed), then runs
the three back ends on the same random batches of 1 and 8 images: untimed warm-up runs (two at batch 1, which also
let TorchScript's profiling executor optimise, one at batch 8), then timed runs until ``--repeats`` are done or
``--budget`` seconds have passed (at least one). Latency is the median of the timed runs; throughput is the batch
size over it. Peak memory is the rise of the process's resident set size over its value before the batch (the
``VmHWM`` high-water mark, reset through ``/proc/self/clear_refs``): the activations and workspace of that back end,
not its weights. The largest difference from the eager logits on the batch of 8 is shown for each exported model.

``medseg.load``: the wall time of ``import medseg; medseg.load`` in a fresh interpreter (median of 5), and whether
that imports Lightning; the ONNX Runtime predictor's import (``medseg.inference.onnx_predictor``) likewise, and
whether it imports torch.

``medseg predict``: a randomly initialised U-Net in the Kvasir recipe's configuration (``configs/unet-kvasir.yaml``:
32 base channels, 256 px, ImageNet normalisation), saved as a checkpoint and exported to ONNX, predicts the 120
test images of Kvasir-SEG (the official ``val`` split, ``$MEDSEG_DATA/kvasir-seg`` or ``--data``) through the
command line: the PyTorch checkpoint and the ONNX model, without ``--tta`` on all 120 images and with it (the
default five transforms: six passes per image) on the first ``--tta-images`` of them. Images per second = images /
wall time of the whole command, start-up included.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import cpu_name

THREADS = 2
BATCHES = (1, 8)
SIZES = {"swin_unet": 224, "transunet": 224}
"""Models benchmarked at their reference input size instead of 256."""
DEFAULT_SIZE = 256
BACKENDS = ("eager", "torchscript", "onnxruntime")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "inference.md"


def _memory_kib(field: str) -> int | None:
    """``VmHWM`` (peak) or ``VmRSS`` of this process in KiB, ``None`` where ``/proc`` does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def _measure(run: Callable[[], Any], warmups: int, repeats: int, budget: float) -> dict[str, Any]:
    """Warm up, then time ``run`` until ``repeats`` runs or ``budget`` seconds; median latency and peak RSS rise."""
    before = _memory_kib("VmRSS")
    tracked = _reset_peak() and before is not None
    for _ in range(warmups):
        output = run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - started < budget):
        start = time.perf_counter()
        output = run()
        times.append(time.perf_counter() - start)
    peak = _memory_kib("VmHWM") if tracked else None
    return {
        "latency_s": statistics.median(times),
        "runs": len(times),
        "peak_mib": (peak - before) / 1024 if peak is not None and before is not None else None,
        "output": output,
    }


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Export one model and time its three back ends in this process."""
    import numpy as np
    import torch

    from medseg.checkpoints import build_model
    from medseg.config import load_config
    from medseg.inference.export import export_model
    from medseg.inference.onnx_predictor import OnnxPredictor
    from medseg.models import model_info

    torch.set_num_threads(THREADS)
    name, size = spec["name"], spec["size"]
    defaults = model_info(name).default_kwargs or {}
    params = {key: value for key, value in defaults.items() if key not in ("in_channels", "num_classes")}
    config = load_config(None, [f"model.name={name}", f"model.params={json.dumps(params)}", f"data.image_size={size}"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    result: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters()), "size": size}
    folder = Path(spec["folder"])
    exported = {}
    for fmt, backend in (("torchscript", "torchscript"), ("onnx", "onnxruntime")):
        start = time.perf_counter()
        exported[backend] = export_model(model, config, folder / f"{name}-{fmt}", fmt, verify=False).model
        result[f"export_{fmt}_s"] = time.perf_counter() - start
    scripted = torch.jit.load(str(exported["torchscript"]))
    session = OnnxPredictor(exported["onnxruntime"], threads=THREADS).session

    def eager(batch: Any) -> Any:
        with torch.inference_mode():
            return model(batch).numpy()

    def torchscript(batch: Any) -> Any:
        with torch.no_grad():
            return scripted(batch).numpy()

    def onnxruntime(batch: Any) -> Any:
        return session.run(None, {"image": batch.numpy()})[0]

    runners = {"eager": eager, "torchscript": torchscript, "onnxruntime": onnxruntime}
    generator = torch.Generator().manual_seed(0)
    for batch_size in BATCHES:
        batch = torch.randn(batch_size, 3, size, size, generator=generator)
        outputs = {}
        for backend, run in runners.items():
            warmups = 2 if batch_size == 1 else 1
            measured = _measure(lambda run=run, batch=batch: run(batch), warmups, spec["repeats"], spec["budget"])
            outputs[backend] = measured.pop("output")
            result[f"{backend}_b{batch_size}"] = measured
        for backend in ("torchscript", "onnxruntime"):
            diff = float(np.abs(outputs[backend] - outputs["eager"]).max())
            result[f"{backend}_diff"] = max(diff, result.get(f"{backend}_diff", 0.0))
    return result


def _run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _import_time(statement: str, repeats: int = 5) -> tuple[float, list[str]]:
    """Median wall time of ``statement`` in fresh interpreters, and which of torch/lightning it imported."""
    code = (
        "import sys, time\nstart = time.perf_counter()\n"
        f"{statement}\n"
        "print(time.perf_counter() - start, *(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    times, loaded = [], []
    for _ in range(repeats):
        words = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout.split()
        times.append(float(words[0]))
        loaded = words[1:]
    return statistics.median(times), loaded


def _predict_rates(data: Path, folder: Path, images: int | None, tta_images: int) -> list[dict[str, Any]]:
    """Images per second of ``medseg predict`` on the Kvasir-SEG test images (see the module docstring)."""
    import torch

    from medseg.checkpoints import build_model, save_weights
    from medseg.config import load_config
    from medseg.inference.export import export_model

    kvasir = data / "kvasir-seg"
    names = (kvasir / "splits" / "val.txt").read_text().split()[:images]
    inputs = {False: folder / "kvasir-test", True: folder / "kvasir-test-tta"}
    for tta, inside in inputs.items():
        inside.mkdir()
        for stem in names[:tta_images] if tta else names:
            (inside / f"{stem}.jpg").symlink_to(kvasir / "images" / f"{stem}.jpg")
    config = load_config(ROOT / "configs" / "unet-kvasir.yaml", [f"data.root={kvasir}"])
    torch.manual_seed(0)
    model = build_model(config).eval()
    checkpoint = save_weights(folder / "unet-kvasir.ckpt", model, config)
    onnx_model = export_model(model, config, folder / "unet-kvasir.onnx").model
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS), "OMP_WAIT_POLICY": "PASSIVE"}
    rows = []
    for label, source in (("PyTorch checkpoint", checkpoint), ("ONNX Runtime", onnx_model)):
        for tta in (False, True):
            out = folder / f"out-{source.suffix[1:]}-{tta}"
            command = [sys.executable, "-m", "medseg", "predict", str(source), str(inputs[tta]), str(out)]
            start = time.perf_counter()
            subprocess.run([*command, *(["--tta"] if tta else [])], check=True, env=env, capture_output=True)
            seconds = time.perf_counter() - start
            written = len(list(out.glob("*.png")))
            rows.append({"label": label, "tta": tta, "images": written, "seconds": seconds})
            print(f"predict {label} tta={tta}: {written} images in {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _cell(result: dict[str, Any], key: str, scale: float, digits: int) -> str:
    value = result.get(key)
    return "-" if value is None else f"{value * scale:.{digits}f}"


def report(
    results: dict[str, dict[str, Any]],
    imports: dict[str, tuple[float, list[str]]],
    predict: list[dict[str, Any]] | None,
    args: argparse.Namespace,
    loads: tuple[str, str],
) -> str:
    """The Markdown page."""
    import torch

    machine = f"{cpu_name()}, {os.cpu_count()} logical CPUs visible, {platform.system()} {platform.release()}"
    import onnxruntime

    lines = [
        "# Inference benchmark: PyTorch eager, TorchScript and ONNX Runtime on CPU",
        "",
        f"Generated by `python benchmarks/bench_inference.py` on {datetime.date.today().isoformat()}"
        " (the method is in the script's docstring).",
        "",
        f"- Machine: {machine}",
        f"- torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {THREADS} threads per back end; load"
        f" average (1, 5, 15 min) at the start {loads[0]}, at the end {loads[1]} (a shared machine: other processes"
        " slow 2-thread runs down and make single runs noisy)",
        f"- Each model in its reference configuration, one output channel, random weights and inputs; latency = median"
        f" of up to {args.repeats} timed runs (or {args.budget:.0f} s) after warm-up; img/s = batch / latency; peak ="
        " rise of the resident set size during the batch (activations and workspace, not weights)",
        "",
        "## Models",
        "",
        "| Model | Size | Params | Export TS / ONNX (s) | Batch 1 latency eager / TS / ORT (ms) |"
        " Batch 8 img/s eager / TS / ORT | Batch 8 peak eager / TS / ORT (MiB) | max abs diff TS / ORT |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    slower = []
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | | | failed: {result['error']} | | | | |")
            continue
        b1 = " / ".join(_cell(result[f"{b}_b1"], "latency_s", 1000, 0) for b in BACKENDS)
        b8 = " / ".join(f"{8 / result[f'{b}_b8']['latency_s']:.2f}" for b in BACKENDS)
        peak = " / ".join(_cell(result[f"{b}_b8"], "peak_mib", 1, 0) for b in BACKENDS)
        export = f"{result['export_torchscript_s']:.1f} / {result['export_onnx_s']:.1f}"
        diff = f"{result['torchscript_diff']:.1e} / {result['onnxruntime_diff']:.1e}"
        lines.append(
            f"| {name} | {result['size']} | {result['params'] / 1e6:.2f} M | {export} | {b1} | {b8} | {peak} | {diff} |"
        )
        for batch in BATCHES:
            eager, ort = result[f"eager_b{batch}"]["latency_s"], result[f"onnxruntime_b{batch}"]["latency_s"]
            if ort > eager:
                slower.append(f"{name} at batch {batch} ({ort / eager:.2f}x the eager latency)")
    lines += [
        "",
        "ONNX Runtime slower than eager PyTorch: " + ("; ".join(slower) if slower else "none") + ".",
        "",
        "## Start-up",
        "",
        "| Import | Wall time (s, median of 5) | Heavy packages imported |",
        "|---|---:|---|",
    ]
    for statement, (seconds, loaded) in imports.items():
        lines.append(f"| `{statement}` | {seconds:.2f} | {', '.join(loaded) or 'neither torch nor lightning'} |")
    if predict:
        lines += [
            "",
            "## `medseg predict` on the Kvasir-SEG test images",
            "",
            "A randomly initialised U-Net in the `configs/unet-kvasir.yaml` configuration (256 px); wall time of the"
            " whole command, start-up included.",
            "",
            "| Model | TTA | Images | Wall time (s) | Images/s |",
            "|---|---|---:|---:|---:|",
        ]
        for row in predict:
            tta = "hflip, vflip, rot90, rot180, rot270" if row["tta"] else "none"
            rate = row["images"] / row["seconds"]
            lines.append(f"| {row['label']} | {tta} | {row['images']} | {row['seconds']:.1f} | {rate:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="models to run (default: every registered model)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per back end and batch (at most)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed runs per back end and batch")
    parser.add_argument(
        "--data", type=Path, help="folder holding kvasir-seg/ (default: $MEDSEG_DATA, else ../shared/data)"
    )
    parser.add_argument("--no-predict", action="store_true", help="skip the medseg predict measurement")
    parser.add_argument("--images", type=int, help="test images medseg predict runs on (default: all 120)")
    parser.add_argument("--tta-images", type=int, default=24, help="test images medseg predict --tta runs on")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file to write")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from medseg.models import list_models

    names = args.models or list_models()
    start_load = _load()
    imports = {
        statement: _import_time(statement)
        for statement in ("import medseg; medseg.load", "import medseg.inference.onnx_predictor")
    }
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            spec = {"name": name, "size": SIZES.get(name, DEFAULT_SIZE), "folder": folder}
            results[name] = _run_worker({**spec, "repeats": args.repeats, "budget": args.budget})
        predict = None
        if not args.no_predict:
            data = args.data or Path(os.environ.get("MEDSEG_DATA") or ROOT.parent / "shared" / "data")
            predict = _predict_rates(data, Path(folder), args.images, args.tta_images)
    page = report(results, imports, predict, args, (start_load, _load()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
