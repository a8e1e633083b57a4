"""How long each ``medseg`` verb takes to start, and which imports that time goes to.

Run from the repository root (under a minute)::

    .venv/bin/python benchmarks/bench_startup.py     # -> benchmarks/results/startup.md

For each light verb (``medseg --help``, ``medseg models``, ``medseg data check`` on a 4-image folder the script
writes) the page gives the wall time of the whole command (median of ``--repeats`` runs) and, from
``python -X importtime``, the cumulative import time of the heaviest top-level packages it loads, and whether it
imports Lightning (it must not). ``import lightning.pytorch`` and ``import medseg.engine`` are timed alone for
comparison. Timings depend on the disk cache and the machine's load: the page records the load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

RESULTS = Path(__file__).resolve().parent / "results" / "startup.md"
PACKAGES = ("torch", "lightning", "monai", "typer", "rich", "PIL", "h5py", "scipy", "medseg")


def _folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    for index in range(4):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / f"{index}.png")
        Image.fromarray(np.full((32, 32), 255, np.uint8)).save(root / "masks" / f"{index}.png")
    return root


def _wall(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=False, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _import_profile(code: str) -> dict[str, float]:
    """Cumulative import seconds of each top-level package that ``code`` loads."""
    output = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in output.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(2)) == 1:  # top-level entries only
            package = match.group(3).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1e6
    return totals


def main() -> None:
    """Measure and write ``benchmarks/results/startup.md``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    medseg = str(Path(sys.executable).with_name("medseg"))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(_folder(Path(tmp) / "set"))
        verbs = {
            "medseg --help": ["--help"],
            "medseg models": ["models"],
            "medseg data check FOLDER": ["data", "check", folder],
        }
        rows = []
        for label, argv in verbs.items():
            seconds = _wall([medseg, *argv], args.repeats)
            code = (
                "import sys\nfrom typer.testing import CliRunner\nfrom medseg.cli import app\n"
                f"CliRunner().invoke(app, {argv!r})\n"
            )
            profile = _import_profile(code)
            rows.append((label, seconds, profile))
            print(label, f"{seconds:.2f}", flush=True)
    alone = {name: _import_profile(f"import {name}") for name in ("lightning.pytorch", "medseg.engine")}

    lines = [
        "# Start-up time of the command line",
        "",
        f"Written by `benchmarks/bench_startup.py` on {datetime.date.today().isoformat()}: {cpu_name()}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load:.2f}, warm disk cache.",
        "",
        "| command | wall time (s) | imports Lightning | heaviest imports (cumulative s) |",
        "|---|---|---|---|",
    ]
    for label, seconds, profile in rows:
        heavy = sorted(((v, k) for k, v in profile.items() if k in PACKAGES), reverse=True)[:4]
        listed = ", ".join(f"{name} {value:.2f}" for value, name in heavy)
        lines.append(f"| `{label}` | {seconds:.2f} | {'yes' if 'lightning' in profile else 'no'} | {listed} |")
    lines += ["", "For comparison, imported alone:", ""]
    for name, profile in alone.items():
        lines.append(f"- `import {name}`: {sum(profile.values()):.2f} s")
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
