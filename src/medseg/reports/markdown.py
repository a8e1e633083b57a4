"""The Markdown evaluation report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["evaluation_report"]


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


def evaluation_report(summary: dict[str, Any], cases: Sequence[dict[str, Any]], overlays: Sequence[str]) -> str:
    """Render the evaluation report.

    Args:
        summary: the content of ``summary.json``.
        cases: per-case records (``cases.json``).
        overlays: overlay image paths relative to the report, each named after its case.

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
    ranked = sorted(cases, key=lambda case: -1.0 if case.get("dice") is None else case["dice"])
    columns = summary["case_metrics"]
    lines += ["", "## Lowest Dice", "", "| case | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for case in ranked[:5]:
        lines.append(f"| {case['case_id']} | " + " | ".join(_number(case.get(name)) for name in columns) + " |")
    if overlays:
        lines += ["", "## Overlays", "", "Prediction in colour, ground-truth outline in white.", ""]
        lines += [f"![{path}]({path})" for path in overlays]
    return "\n".join(lines) + "\n"
