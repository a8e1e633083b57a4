"""Run a study: prepare its folder, run what is left with a local pool of processes (or Ray), report as runs finish.

Local execution (:func:`run_study`, the default backend): ``jobs`` runs at a time, each a subprocess
(``python -m medseg.studies.worker``) with its share of the CPUs (``OMP_NUM_THREADS`` and ``train.threads`` =
CPUs // jobs) and, where there are several GPUs, one GPU (``CUDA_VISIBLE_DEVICES``); ``jobs=0`` runs them one
after another in this process. The report is rewritten after every run that ends, so a study cut short keeps its
rows; running the study again skips the runs that are done, resumes the interrupted ones and evaluates the
trained ones that were not evaluated. With ``backend="ray"`` each run is a Ray task (the optional extra
``medseg[ray]``) requesting its CPUs and GPUs from a local Ray instance or a cluster; the study folder must then be
on storage that every node sees at the same path.
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from medseg.config import save_config
from medseg.studies.plan import PlannedRun, expand_study, run_state
from medseg.studies.report import write_report
from medseg.studies.schema import StudyConfig, StudyError

__all__ = ["RunOutcome", "prepare_study", "run_study"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended in this invocation.

    Attributes:
        run_id: the run.
        ok: trained and evaluated.
        message: what was done, or the error.
    """

    run_id: str
    ok: bool
    message: str


def prepare_study(study: StudyConfig, study_file: Path) -> list[PlannedRun]:
    """Expand the study and write its folder: ``study.yaml`` and each run's ``configs/<run>.yaml``.

    Args:
        study: the study.
        study_file: its file (copied into the folder).

    Returns:
        The runs.

    Raises:
        StudyError: a run that has started under another configuration (the study file was changed since).
    """
    runs = expand_study(study)
    folder = study.study_dir
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "runs").mkdir(exist_ok=True)
    (folder / "logs").mkdir(exist_ok=True)
    (folder / "study.yaml").write_text(study_file.read_text(encoding="utf-8"), encoding="utf-8")
    for run in runs:
        new = run.config_path.with_suffix(".new")
        save_config(run.config, new)
        if run.config_path.is_file() and run.config_path.read_text() != new.read_text() and run.run_dir.exists():
            new.unlink()
            raise StudyError(
                f"run {run.run_dir} started under {run.config_path}, which {study_file.name} now changes; "
                "give the study another name, or remove that run folder to train it again"
            )
        new.replace(run.config_path)
    return runs


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _run_subprocess(run: PlannedRun, threads: int, gpu: str | None, log_file: Path) -> RunOutcome:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    command = [sys.executable, "-m", "medseg.studies.worker", str(run.config_path), str(run.run_dir), str(threads)]
    with log_file.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        code = subprocess.run(command, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False).returncode
    if code == 0:
        return RunOutcome(run.run_id, True, "done")
    lines = log_file.read_text(errors="replace").strip().splitlines()
    last = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
    return RunOutcome(run.run_id, False, f"exit status {code}: {last} (log: {log_file})")


def _run_here(run: PlannedRun, threads: int) -> RunOutcome:
    from medseg.errors import MedsegError
    from medseg.studies.worker import execute_run

    try:
        return RunOutcome(run.run_id, True, execute_run(run.config_path, run.run_dir, threads))
    except MedsegError as error:
        return RunOutcome(run.run_id, False, str(error))


def _ray_task(config_path: str, run_dir: str, threads: int) -> str:
    """One run as a Ray task (in a fresh worker process: ``max_calls=1``)."""
    from medseg.runtime import set_threads
    from medseg.studies.worker import execute_run

    set_threads(threads)
    return execute_run(Path(config_path), Path(run_dir), threads)


def _run_with_ray(
    todo: list[PlannedRun], cpus: int, gpus: float | None, address: str | None, finish: Callable[[RunOutcome], None]
) -> None:
    """Each run as a Ray task requesting ``cpus`` CPUs and ``gpus`` GPUs, gathered as they end."""
    try:
        import ray
    except ImportError:
        raise StudyError("--backend ray needs Ray: pip install 'medseg[ray]'") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_calls=1)(_ray_task)
    pending = {task.remote(str(run.config_path), str(run.run_dir), cpus): run for run in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            run = pending.pop(ref)
            try:
                outcome = RunOutcome(run.run_id, True, ray.get(ref))
            except Exception as error:  # a failed task (RayTaskError) is that run's outcome, the others go on
                cause = getattr(error, "cause", None) or error
                lines = str(cause).strip().splitlines()
                outcome = RunOutcome(run.run_id, False, lines[-1] if lines else repr(cause))
            finish(outcome)


def run_study(
    study: StudyConfig,
    study_file: Path,
    jobs: int = 1,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    gpus_per_run: float | None = None,
) -> list[RunOutcome]:
    """Run every run of a study that is not done, ``jobs`` at a time, and write the report after each.

    Args:
        study: the study.
        study_file: its file.
        jobs: parallel processes; 0 runs them one after another in this process. With Ray: each task requests
            the CPUs of this machine // ``jobs`` (at least 1), so ``jobs`` runs fit on a machine like this one.
        on_outcome: called with each run's outcome as it ends (progress messages).
        backend: ``local`` (processes on this machine) or ``ray`` (Ray tasks; the study folder must be on storage
            every node of the cluster sees at the same path).
        ray_address: the Ray cluster (``None``: ``RAY_ADDRESS``, else a local Ray instance).
        gpus_per_run: GPUs each Ray task requests (``None``: 1 where the cluster has GPUs, else 0).

    Returns:
        The outcomes of the runs started in this invocation.

    Raises:
        StudyError: a run folder that cannot be resumed (not empty, no ``config.yaml``), or a bad ``jobs``.
    """
    if jobs < 0:
        raise StudyError(f"--jobs must be 0 (in this process) or more, got {jobs}")
    if backend not in ("local", "ray"):
        raise StudyError(f"unknown backend {backend!r}: local or ray")
    from medseg.runtime import available_cpus

    runs = prepare_study(study, study_file)
    broken = [run.run_dir for run in runs if run_state(run) == "broken"]
    if broken:
        raise StudyError(f"{broken[0]} is not empty but has no config.yaml: remove it to run it again")
    todo = [run for run in runs if run_state(run) != "done"]
    threads = max(1, available_cpus() // max(jobs, 1))
    outcomes: list[RunOutcome] = []
    lock = threading.Lock()

    def finish(outcome: RunOutcome) -> None:
        with lock:
            outcomes.append(outcome)
            write_report(study, runs)
            if on_outcome:
                on_outcome(outcome)

    try:
        if backend == "ray" and todo:
            _run_with_ray(todo, threads, gpus_per_run, ray_address, finish)
        elif jobs == 0:
            for run in todo:
                finish(_run_here(run, threads))
        elif todo:
            gpus = _gpu_count()
            slots: queue.Queue[str | None] = queue.Queue()
            for index in range(jobs):
                slots.put(str(index % gpus) if gpus > 1 else None)

            def job(run: PlannedRun) -> RunOutcome:
                gpu = slots.get()
                try:
                    return _run_subprocess(run, threads, gpu, study.study_dir / "logs" / f"{run.run_id}.log")
                finally:
                    slots.put(gpu)

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in as_completed([pool.submit(job, run) for run in todo]):
                    finish(future.result())
    finally:  # also when interrupted: the report shows what is done and what is left
        with lock:
            write_report(study, runs)
    return outcomes
