"""Train and evaluate one run of a study, in this process: what each local job (a subprocess) and each Ray task runs.

``python -m medseg.studies.worker CONFIG RUN_DIR THREADS`` does what :func:`execute_run` does; its exit status is 0
when the run is trained and evaluated, 2 for a medseg error (the one-line message on stderr), 1 otherwise.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

__all__ = ["execute_run", "main"]

log = logging.getLogger(__name__)


def execute_run(config_path: Path, run_dir: Path, threads: int | None = None) -> str:
    """Bring one run to ``done``: train it (or resume it, as ``medseg train --resume``), then evaluate it.

    A run folder with ``config.yaml`` is resumed (a finished one is left as it is); an empty one, or none, starts
    afresh from ``config_path``. A trained run without its evaluation is evaluated as ``medseg train`` does (the
    best checkpoint on ``eval.split`` under ``eval.protocol``, on the training device).

    Args:
        config_path: the run's configuration (written by the study).
        run_dir: its run folder.
        threads: ``train.threads`` (a runtime setting, also accepted when resuming).

    Returns:
        What was done: ``trained``, ``resumed`` or ``evaluated``.

    Raises:
        MedsegError: the run cannot be trained or evaluated (bad data, numerical fault ...).
    """
    from medseg.config import load_config
    from medseg.evaluation import evaluate_run, training_device
    from medseg.recipes import final_stage_config, resume_experiment, train_experiment
    from medseg.studies.plan import is_trained
    from medseg.tasks import task_class

    runtime = [f"train.threads={threads}"] if threads else []
    runtime.append("train.progress_bar=false")
    if (run_dir / "config.yaml").is_file():
        config = load_config(run_dir / "config.yaml")
        done = "evaluated"
        if not is_trained(run_dir, config):
            resume_experiment(run_dir, runtime)
            done = "resumed"
    else:
        run_dir.mkdir(parents=True, exist_ok=True)  # a staged run writes its config.yaml into it first
        config = load_config(config_path, runtime)
        train_experiment(config, run_dir=run_dir)
        done = "trained"
    if task_class(final_stage_config(config).train.task).evaluates:
        evaluate_run(run_dir, progress=False, device=training_device(config))
    return done


def main(argv: list[str] | None = None) -> int:
    """Run :func:`execute_run` on ``CONFIG RUN_DIR THREADS`` (``0`` threads: the process's default).

    Args:
        argv: the arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        The exit status.
    """
    from medseg.runtime import prepare_environment

    prepare_environment()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("medseg").setLevel(logging.INFO)
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO when imported: quieted below)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from medseg.errors import MedsegError

    config_path, run_dir, threads = argv if argv is not None else sys.argv[1:]
    try:
        done = execute_run(Path(config_path), Path(run_dir), int(threads) or None)
    except MedsegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    log.info("%s: %s", run_dir, done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
