"""``medseg demo``: train a small U-Net on the synthetic data, evaluate it and write the report."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from medseg.config import load_config
from medseg.engine import train
from medseg.evaluation import EvaluationOutput, evaluate_run

__all__ = ["demo_config_path", "run_demo"]


def demo_config_path() -> Path:
    """Return the path of the packaged demo configuration."""
    return Path(str(resources.files("medseg") / "resources" / "demo.yaml"))


def run_demo(output_dir: str | Path = "runs", epochs: int | None = None) -> EvaluationOutput:
    """Train the demo configuration into ``<output_dir>/demo`` (replacing an earlier demo) and evaluate it.

    Args:
        output_dir: parent folder of the run folder.
        epochs: optional number of epochs instead of the configured one.

    Returns:
        The test-split evaluation.
    """
    overrides = [f"output_dir={Path(output_dir).resolve()}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    config = load_config(demo_config_path(), overrides)
    run_dir = Path(output_dir).resolve() / config.name
    shutil.rmtree(run_dir, ignore_errors=True)
    result = train(config, run_dir=run_dir)
    return evaluate_run(result.run_dir, split="test", checkpoint="best")
