"""The study report: ``study.md``, ``study.csv`` (one row per arm and dataset), ``runs.csv`` and ``study.png``.

Written from what the run folders hold (``evaluation/<split>/summary.json`` and ``cases.json``,
``train_summary.json``), so it can be rewritten at any time and a study cut short keeps its finished rows. The
model figures (parameters, FLOPs, latency) are measured once per model configuration and kept in ``models.json``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.studies.plan import PlannedRun, evaluation_dir, run_state
from medseg.studies.schema import StudyConfig
from medseg.studies.stats import ALPHA, BOOTSTRAP_SAMPLES, LOWER_IS_BETTER, PairedComparison, paired_comparison

__all__ = ["RunResult", "collect_results", "model_figures", "write_report"]

LATENCY_REPEATS = 5


@dataclass
class RunResult:
    """What one run of the study reached.

    Attributes:
        run: the planned run.
        state: its :data:`~medseg.studies.plan.RunState`.
        summary: its evaluation ``summary.json`` (empty until evaluated).
        cases: its ``cases.json`` records.
        train_seconds: training time (all stages), ``None`` until trained.
    """

    run: PlannedRun
    state: str
    summary: dict[str, Any] = field(default_factory=dict)
    cases: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float | None = None

    def headline(self) -> dict[str, float]:
        """The protocol's summary metrics (``mean`` of a per-case metric, ``value`` of a pooled one)."""
        values = {}
        for name, stats in self.summary.get("metrics", {}).items():
            value = stats.get("mean", stats.get("value")) if isinstance(stats, dict) else None
            values[name] = math.nan if value is None else float(value)
        return values


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _train_seconds(run_dir: Path) -> float | None:
    """Seconds of training in ``train_summary.json``, summed over the stages of a staged run."""
    folders = sorted((run_dir / "stages").glob("*")) if (run_dir / "stages").is_dir() else [run_dir]
    seconds = [(_json(folder / "train_summary.json") or {}).get("seconds") for folder in folders]
    return None if not seconds or None in seconds else float(sum(seconds))


def collect_results(runs: list[PlannedRun]) -> list[RunResult]:
    """Read what each run reached.

    Args:
        runs: the study's runs.

    Returns:
        One result per run, in the same order.
    """
    results = []
    for run in runs:
        state = run_state(run)
        result = RunResult(run, state)
        if state in ("done", "evaluate"):
            result.train_seconds = _train_seconds(run.run_dir)
        if state == "done":
            result.summary = _json(evaluation_dir(run) / "summary.json") or {}
            result.cases = _json(evaluation_dir(run) / "cases.json") or []
        results.append(result)
    return results


def _model_key(run: PlannedRun) -> str:
    from medseg.recipes import final_stage_config

    config = final_stage_config(run.config)
    return json.dumps(
        [config.model.name, config.model.params, config.data.in_channels, config.out_channels, config.data.image_size],
        sort_keys=True,
    )


def model_figures(run: PlannedRun) -> dict[str, float]:
    """Parameters (true and thop-style), FLOPs and CPU latency of a run's final model at its training size.

    FLOPs are ``torch.utils.flop_counter.FlopCounterMode``'s count of one forward pass of one input (a
    multiply-accumulate counts 2; thop-style tables count MACs, half of it); latency is the median of
    ``LATENCY_REPEATS`` forward passes of one input on the CPU after a warm-up, in eval mode without gradients,
    in the process writing the report (other jobs of the study may share its CPUs).

    Args:
        run: a planned run.

    Returns:
        ``params``, ``thop_params``, ``flops``, ``latency_ms``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medseg.engine.module import build_model
    from medseg.models.params import count_parameters, thop_style_count
    from medseg.recipes import final_stage_config

    config = final_stage_config(run.config)
    model = build_model(config).eval()
    size = config.data.image_size
    example = torch.zeros(1, config.data.in_channels, size, size)
    figures: dict[str, float] = {
        "params": count_parameters(model),
        "thop_params": thop_style_count(model, example),
    }
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            model(example)
        figures["flops"] = counter.get_total_flops()
        model(example)
        times = []
        for _ in range(LATENCY_REPEATS):
            started = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - started)
    figures["latency_ms"] = 1000 * statistics.median(times)
    return figures


def _cached_figures(study_dir: Path, runs: list[PlannedRun]) -> dict[str, dict[str, float]]:
    """:func:`model_figures` of each model configuration of the runs, kept in ``models.json``."""
    path = study_dir / "models.json"
    cache: dict[str, dict[str, float]] = _json(path) or {}
    changed = False
    for run in runs:
        key = _model_key(run)
        if key not in cache:
            cache[key] = model_figures(run)
            changed = True
    if changed:
        path.write_text(json.dumps(cache, indent=1))
    return cache


def _seed_mean_cases(results: list[RunResult], metric: str) -> dict[str, float]:
    """Each case's ``metric`` averaged over the finished seeds (undefined values are left out)."""
    values: dict[str, list[float]] = {}
    for result in results:
        for case in result.cases:
            value = case.get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                values.setdefault(str(case["case_id"]), []).append(float(value))
    return {case: sum(items) / len(items) for case, items in values.items()}


def _mean_sd(values: list[float]) -> tuple[float, float]:
    values = [value for value in values if math.isfinite(value)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p_text(value: float) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    return "-" if not math.isfinite(value) else f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def _millions(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} M"


def _setting(results: list[RunResult], key: str) -> str:
    """The distinct values of a summary field over the evaluated runs (``-`` before any run is evaluated)."""
    values = sorted({str(result.summary.get(key)) for result in results if result.summary})
    return " / ".join(values) or "-"


def write_report(study: StudyConfig, runs: list[PlannedRun], study_dir: Path | None = None) -> Path:
    """Write ``study.md``, ``study.csv``, ``runs.csv`` and ``study.png`` into the study folder.

    Args:
        study: the study.
        runs: its runs (:func:`~medseg.studies.plan.expand_study`).
        study_dir: the study folder (``study.study_dir`` when ``None``).

    Returns:
        The path of ``study.md``.
    """
    study_dir = study_dir or study.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    results = collect_results(runs)
    figures = _cached_figures(study_dir, [r.run for r in results if r.state == "done"])
    metric = study.compare_metric
    datasets = list(dict.fromkeys(run.dataset for run in runs))
    rows: list[dict[str, Any]] = []
    per_case: dict[str, dict[str, dict[str, float]]] = {}
    md = [
        f"# Study {study.name}",
        "",
        *([study.description.strip(), ""] if study.description else []),
        f"- Seeds: {', '.join(map(str, study.seeds))} (`train.seed`; the split is the same for every run)"
        if not study.folds
        else f"- Folds: {', '.join(map(str, study.folds))} (`data.fold`, each case is tested in one fold; the "
        f"folds are pooled); seeds: {', '.join(map(str, study.seeds))} (`train.seed`)",
        f"- Reference arm: {study.label(study.reference)}; paired comparisons on the per-case `{metric}`",
        f"- Runs done: {sum(r.state == 'done' for r in results)} of {len(results)}"
        f" (written {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC)",
        "",
    ]
    for dataset in datasets:
        in_dataset = [r for r in results if r.run.dataset == dataset]
        done = [r for r in in_dataset if r.state == "done"]
        metric_names = list(dict.fromkeys(name for r in done for name in r.headline()))
        md += [
            f"## {dataset}",
            "",
            f"- Protocol: {_setting(done, 'protocol')}; split: {_setting(done, 'split')}; checkpoint: "
            f"{_setting(done, 'checkpoint_rule')}; input size: {_setting(done, 'input_size')}",
            "",
            f"Mean ± sd over the {'runs (folds x seeds)' if study.folds else 'seeds'} that finished (sd needs two)."
            " Parameters: true / thop-style; FLOPs: one "
            "forward pass of one input at the training size (torch's counter, 2 per multiply-accumulate); "
            "latency: CPU, one input, median of "
            f"{LATENCY_REPEATS}; training time: mean over runs.",
            "",
            f"| Arm | {'Runs' if study.folds else 'Seeds'} | "
            + " | ".join(metric_names)
            + " | Params | thop-style | GFLOPs | Train (min) | Latency (ms) |",
            "|---|---:|" + "---:|" * len(metric_names) + "---:|---:|---:|---:|---:|",
        ]
        per_case[dataset] = {}
        for arm in study.arms:
            arm_done = [r for r in done if r.run.arm == arm]
            row: dict[str, Any] = {"dataset": dataset, "arm": study.label(arm), "seeds_done": len(arm_done)}
            cells = []
            for name in metric_names:
                mean, sd = _mean_sd([r.headline().get(name, math.nan) for r in arm_done])
                row[f"{name}_mean"], row[f"{name}_sd"] = mean, sd
                cells.append(f"{_fmt(mean)} ± {_fmt(sd)}" if math.isfinite(sd) else _fmt(mean))
            model = figures.get(_model_key(arm_done[0].run)) if arm_done else None
            train = [r.train_seconds for r in arm_done if r.train_seconds is not None]
            row.update(
                params=model and model["params"],
                thop_params=model and model["thop_params"],
                flops=model and model["flops"],
                latency_ms=model and model["latency_ms"],
                train_seconds=statistics.fmean(train) if train else None,
            )
            md.append(
                f"| {study.label(arm)} | {len(arm_done)} | "
                + " | ".join(cells)
                + f" | {_millions(row['params'])} | {_millions(row['thop_params'])} | "
                f"{_fmt(row['flops'] and row['flops'] / 1e9, 2)} | "
                f"{_fmt(row['train_seconds'] and row['train_seconds'] / 60, 1)} | {_fmt(row['latency_ms'], 1)} |"
            )
            if arm_done:
                per_case[dataset][arm] = _seed_mean_cases(arm_done, metric)
            rows.append(row)
        md += _comparison_section(study, dataset, per_case[dataset], rows, metric)
    md += _runs_section(study_dir, results)
    (study_dir / "study.md").write_text("\n".join(md) + "\n")
    _write_csv(study_dir / "study.csv", rows)
    _write_csv(study_dir / "runs.csv", [_run_row(r) for r in results])
    _plot(study, per_case, metric, study_dir / "study.png")
    return study_dir / "study.md"


def _comparison_section(
    study: StudyConfig, dataset: str, cases: dict[str, dict[str, float]], rows: list[dict[str, Any]], metric: str
) -> list[str]:
    """The paired comparisons of one dataset (also recorded into ``rows``)."""
    reference = cases.get(study.reference)
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    lines = [
        "",
        f"Paired per-case `{metric}` ({direction} is better) against {study.label(study.reference)}: each case's "
        f"score is first averaged over the arm's finished seeds; difference = arm - reference over the cases "
        f"both scored; 95 % CI: percentile bootstrap of the mean difference ({BOOTSTRAP_SAMPLES} resamples); p: "
        f"two-sided Wilcoxon signed-rank; verdict better/worse when p < {ALPHA} and the CI excludes 0 (no "
        "correction for several comparisons).",
        "",
        "| Arm | Cases | Mean difference | 95 % CI | Wilcoxon p | Verdict |",
        "|---|---:|---:|---|---:|---|",
    ]
    for arm in study.arms:
        if arm == study.reference:
            continue
        row = next(r for r in rows if r["dataset"] == dataset and r["arm"] == study.label(arm))
        if reference is None or arm not in cases:
            lines.append(f"| {study.label(arm)} | - | - | - | - | not yet run |")
            continue
        result: PairedComparison = paired_comparison(cases[arm], reference, metric)
        row.update(
            diff_mean=result.mean_difference,
            ci_low=result.ci_low,
            ci_high=result.ci_high,
            p_value=result.p_value,
            verdict=result.verdict,
        )
        lines.append(
            f"| {study.label(arm)} | {result.cases} | {_fmt(result.mean_difference)} | "
            f"[{_fmt(result.ci_low)}, {_fmt(result.ci_high)}] | {_p_text(result.p_value)} | {result.verdict} |"
        )
    return [*lines, "", "![per-case scores](study.png)", ""]


def _run_row(result: RunResult) -> dict[str, Any]:
    run = result.run
    return {
        "run": run.run_id,
        "arm": run.arm,
        "dataset": run.dataset,
        "fold": run.fold,
        "seed": run.seed,
        "state": result.state,
        "train_seconds": result.train_seconds,
        **result.headline(),
    }


def _runs_section(study_dir: Path, results: list[RunResult]) -> list[str]:
    lines = ["## Runs", "", "| Run | State | Train (min) | Folder |", "|---|---|---:|---|"]
    for result in results:
        minutes = result.train_seconds and result.train_seconds / 60
        folder = result.run.run_dir.relative_to(study_dir) if result.run.run_dir.is_relative_to(study_dir) else ""
        lines.append(f"| {result.run.run_id} | {result.state} | {_fmt(minutes, 1)} | `{folder}` |")
    return lines


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)


def _plot(study: StudyConfig, per_case: dict[str, dict[str, dict[str, float]]], metric: str, path: Path) -> None:
    """Per-case scores (averaged over seeds) of each arm: a box and the cases as points, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = list(per_case)
    figure, axes = plt.subplots(1, max(len(panels), 1), figsize=(1.2 + 1.1 * len(study.arms) * max(len(panels), 1), 4))
    axes = np.atleast_1d(axes)
    rng = np.random.default_rng(0)
    for axis, dataset in zip(axes, panels, strict=False):
        arms = [arm for arm in study.arms if arm in per_case[dataset]]
        data = [[v for v in per_case[dataset][arm].values() if math.isfinite(v)] for arm in arms]
        if data:
            axis.boxplot(data, showfliers=False)
            for index, values in enumerate(data, start=1):
                axis.scatter(index + rng.uniform(-0.15, 0.15, len(values)), values, s=8, alpha=0.5)
            axis.set_xticks(range(1, len(arms) + 1), [study.label(arm) for arm in arms], rotation=30, ha="right")
        axis.set_title(dataset)
        axis.set_ylabel(f"per-case {metric} (mean over seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
