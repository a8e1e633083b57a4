"""Paired comparison of two arms over the same test cases: bootstrap confidence interval and Wilcoxon test.

Each arm's per-case score is its mean over the seeds that finished (the seeds are averaged per case first, so a
case counts once); the differences ``arm - reference`` over the cases both arms scored are then compared:

- the mean difference with a percentile bootstrap 95 % confidence interval (``BOOTSTRAP_SAMPLES`` resamples of
  the cases, NumPy generator seeded with ``BOOTSTRAP_SEED``, so a report is reproducible);
- the two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped, its default);
- the verdict: ``better`` or ``worse`` when p < ``ALPHA`` and the interval excludes 0 (in the metric's direction),
  else ``no detectable difference``. No correction for several comparisons is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ALPHA",
    "BOOTSTRAP_SAMPLES",
    "BOOTSTRAP_SEED",
    "LOWER_IS_BETTER",
    "PairedComparison",
    "bootstrap_ci",
    "paired_comparison",
]

ALPHA = 0.05
BOOTSTRAP_SAMPLES = 10_000
BOOTSTRAP_SEED = 0
LOWER_IS_BETTER = frozenset({"hd95", "assd", "hd"})
"""Per-case metrics where a smaller value is better (distances)."""


@dataclass(frozen=True)
class PairedComparison:
    """An arm against the reference on one metric.

    Attributes:
        cases: the cases both arms scored (with a defined value).
        mean_difference: mean of ``arm - reference`` over those cases.
        ci_low: lower end of the bootstrap 95 % interval of that mean.
        ci_high: upper end.
        p_value: two-sided Wilcoxon signed-rank p-value (1 when every difference is 0, NaN under 2 cases).
        verdict: ``better``, ``worse`` or ``no detectable difference``.
    """

    cases: int
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


def bootstrap_ci(
    differences: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``differences`` (cases resampled with replacement).

    Args:
        differences: one value per case.
        samples: resamples.
        seed: NumPy generator seed.

    Returns:
        ``(low, high)``: the 2.5th and 97.5th percentiles of the resampled means.
    """
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(differences), size=(samples, len(differences)))
    means = differences[index].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_comparison(arm: dict[str, float], reference: dict[str, float], metric: str) -> PairedComparison:
    """Compare an arm's per-case scores with the reference's.

    Args:
        arm: ``{case_id: score}`` (already averaged over seeds).
        reference: the same for the reference arm.
        metric: the metric's name (its direction: :data:`LOWER_IS_BETTER`).

    Returns:
        The comparison.
    """
    from scipy.stats import wilcoxon

    shared = sorted(
        case for case in arm.keys() & reference.keys() if math.isfinite(arm[case]) and math.isfinite(reference[case])
    )
    differences = np.array([arm[case] - reference[case] for case in shared], dtype=float)
    if len(differences) < 2:
        mean = float(differences.mean()) if len(differences) else math.nan
        return PairedComparison(len(differences), mean, math.nan, math.nan, math.nan, "no detectable difference")
    low, high = bootstrap_ci(differences)
    p_value = 1.0 if not differences.any() else float(wilcoxon(differences).pvalue)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    verdict = "no detectable difference"
    if p_value < ALPHA and (low > 0 or high < 0):
        verdict = "better" if sign * (low + high) > 0 else "worse"
    return PairedComparison(len(differences), float(differences.mean()), low, high, p_value, verdict)
