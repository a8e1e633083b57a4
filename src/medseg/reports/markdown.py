"""The Markdown evaluation report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["evaluation_report", "rank_cases"]


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _metric_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    if all("value" in stats for stats in metrics.values()):
        rows = [f"| {name} | {_number(stats['value'])} |" for name, stats in metrics.items()]
        return ["| metric | value |", "|---|---|", *rows]
    lines = ["| metric | mean | std | median | valid | undefined |", "|---|---|---|---|---|---|"]
    for name, stats in metrics.items():
        lines.append(
            f"| {name} | {_number(stats['mean'])} | {_number(stats['std'])} | {_number(stats['median'])} "
            f"| {stats['n_valid']} | {stats['n_undefined']} |"
        )
    return lines


def rank_cases(cases: Sequence[dict[str, Any]], metric: str = "dice") -> list[dict[str, Any]]:
    """Order cases from worst to best by a per-case metric where higher is better.

    Cases where the metric is undefined (``None`` or NaN, e.g. both masks empty under a clean protocol) come
    last: nothing was there to find and nothing was predicted.

    Args:
        cases: per-case records (``cases.json``).
        metric: the ranking metric.

    Returns:
        The records, lowest value first (stable for ties).
    """

    def key(case: dict[str, Any]) -> tuple[bool, float]:
        value = case.get(metric)
        undefined = value is None or (isinstance(value, float) and math.isnan(value))
        return undefined, 0.0 if undefined else float(value)

    return sorted(cases, key=key)


def evaluation_report(
    summary: dict[str, Any],
    cases: Sequence[dict[str, Any]],
    overlays: Mapping[str, str],
    ranking_metric: str = "dice",
) -> str:
    """Render the evaluation report.

    Args:
        summary: the content of ``summary.json``.
        cases: per-case records (``cases.json``).
        overlays: case id -> overlay image path relative to the report, for the worst cases.
        ranking_metric: the per-case metric that ranks the cases (lowest first) in the table of worst cases.

    Returns:
        Markdown text.
    """
    lines = [
        f"# Evaluation of `{summary['run']}` on the {summary['split']} split",
        "",
        f"- protocol: `{summary['protocol']}` — {summary['protocol_description']}",
        f"- checkpoint: `{summary['checkpoint']}` ({summary['checkpoint_rule']})",
        f"- model: `{summary['model']}`, cases: {summary['num_cases']}, input size {summary['input_size']}",
        f"- aggregation: {summary['aggregation']}",
        *(
            [
                f"- empty-mask policy: both empty -> {summary['empty_policy']['both_empty']}, "
                f"HD95 with one side empty -> {summary['empty_policy']['hd95_empty']}"
            ]
            if "empty_policy" in summary
            else []
        ),
        "",
        "## Metrics",
        "",
        *_metric_table(summary["metrics"]),
    ]
    per_class = summary.get("per_class", {})
    if per_class:
        metric_names = list(next(iter(per_class.values())))
        lines += [
            "",
            "## Per class (mean ± std over cases)",
            "",
            "| class | " + " | ".join(metric_names) + " |",
            "|---" * (len(metric_names) + 1) + "|",
        ]
        for class_name, metrics in per_class.items():
            cells = [f"{_number(metrics[m]['mean'])} ± {_number(metrics[m]['std'])}" for m in metric_names]
            lines.append(f"| {class_name} | " + " | ".join(cells) + " |")
    ranked = rank_cases(cases, ranking_metric)
    columns = summary["case_metrics"]
    title = "Dice" if ranking_metric == "dice" else ranking_metric
    lines += [
        "",
        f"## Lowest {title}",
        "",
        "| case | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for case in ranked[: max(5, len(overlays))]:
        lines.append(f"| {case['case_id']} | " + " | ".join(_number(case.get(name)) for name in columns) + " |")
    if overlays:
        values = {case["case_id"]: case.get(ranking_metric) for case in cases}
        lines += [
            "",
            f"## Overlays of the {len(overlays)} lowest-{title} case{'s' if len(overlays) > 1 else ''}",
            "",
            "Prediction in colour, ground-truth outline in white; a volume is shown at its slice with the most "
            "ground truth.",
        ]
        for case_id, path in overlays.items():
            lines += ["", f"`{case_id}` ({ranking_metric} {_number(values.get(case_id))})", "", f"![{case_id}]({path})"]
    return "\n".join(lines) + "\n"
