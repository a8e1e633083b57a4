"""The OpenMP wait policy and the thread count medseg picks (``medseg.runtime``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg import runtime


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime.cgroup_cpu_limit(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert runtime.cgroup_cpu_limit(tmp_path) is None


def test_available_cpus_is_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: 2.5)
    assert runtime.available_cpus() == 3
    monkeypatch.setattr(runtime, "cgroup_cpu_limit", lambda: None)
    assert runtime.available_cpus() == 8
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {3})
    assert runtime.available_cpus() == 1


def test_prepare_environment_keeps_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "available_cpus", lambda: 3)
    assert runtime.prepare_environment() == {"OMP_NUM_THREADS": "3"}
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert runtime.prepare_environment() == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_set_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert runtime.set_threads(None) == 2 and torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(runtime, "available_cpus", lambda: 1)
        assert runtime.set_threads(None) == 1
    finally:
        torch.set_num_threads(before)


def _image_folder(root: Path) -> Path:
    for name in ("images", "masks"):
        (root / name).mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(root / "masks" / "a.png")
    return root


@pytest.mark.parametrize("verb", ["--help", "models", "data check"])
def test_light_verbs_do_not_import_lightning(verb: str, tmp_path: Path) -> None:
    args = verb.split() + ([str(_image_folder(tmp_path / "set"))] if verb == "data check" else [])
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medseg.cli import app\n"
        f"result = CliRunner().invoke(app, {args!r})\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'lightning' or m.startswith('medseg.engine')]\n"
        "print(result.exit_code, heavy, result.output[-300:] if result.exit_code else '')\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "0 []"


def test_the_command_sets_the_policy_before_torch_loads() -> None:
    """`medseg` sets OMP_WAIT_POLICY before OpenMP reads it (a verb that imports torch)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env["OMP_DISPLAY_ENV"] = "TRUE"  # the OpenMP runtime prints the settings it read when it loads
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from medseg.cli import app\n"
        "result = CliRunner().invoke(app, ['models', '--json'])\n"
        "print(result.exit_code, 'lightning' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert output.stdout.split() == ["0", "False"]
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in output.stderr
