"""Process set-up for CPU work: an OpenMP wait policy that shares the machine, and a thread count that fits it.

OpenMP worker threads spin while they wait for each other by default. On a machine where another process is
busy, the spinning threads take the cores the working thread needs and a training step becomes 10-20 times slower
(``benchmarks/results/threads.md`` measures it). medseg therefore asks for the passive wait policy unless the user
chose one, and sizes its thread pool from the CPUs this process may actually use (affinity mask and cgroup CPU
quota), not from the machine's core count.

The OpenMP runtime reads its environment once, when PyTorch loads it: :func:`prepare_environment` must run before
``import torch`` (the ``medseg`` command does it first thing). Library users can call it at the top of their script
or export ``OMP_WAIT_POLICY=PASSIVE`` themselves.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_limit", "prepare_environment", "set_threads"]

WAIT_POLICY = "PASSIVE"
"""The OpenMP wait policy medseg sets when the environment has none."""


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs, or ``None`` when there is none.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) or cgroup v1
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``.

    Args:
        root: the cgroup file-system mount point.

    Returns:
        quota / period, or ``None`` when unlimited or unreadable.
    """
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def available_cpus() -> int:
    """The number of CPUs this process may use: its affinity mask, capped by the cgroup CPU quota.

    Returns:
        At least 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def prepare_environment() -> dict[str, str]:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` and ``OMP_NUM_THREADS`` (the available CPUs) where the user set neither.

    Call it before PyTorch is imported; afterwards the OpenMP runtime has read its settings already.

    Returns:
        The variables this call set (empty when the user had set both).
    """
    wanted = {"OMP_WAIT_POLICY": WAIT_POLICY, "OMP_NUM_THREADS": str(available_cpus())}
    changed = {name: value for name, value in wanted.items() if not os.environ.get(name)}
    os.environ.update(changed)
    return changed


def set_threads(threads: int | None = None) -> int:
    """Size PyTorch's intra-op thread pool.

    Args:
        threads: the wanted count (``train.threads``); ``None`` or 0 for the available CPUs (or
            ``OMP_NUM_THREADS`` when the user set it).

    Returns:
        The thread count in force.
    """
    import torch

    if not threads:
        configured = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(configured) if configured.isdigit() and int(configured) > 0 else available_cpus()
    torch.set_num_threads(threads)
    return threads
