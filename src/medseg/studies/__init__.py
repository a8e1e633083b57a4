"""Studies: every method side by side on the same data, with several seeds and paired statistics.

A study file (:mod:`medseg.studies.schema`) expands into runs (:mod:`medseg.studies.plan`), which a local pool of
processes trains and evaluates (:mod:`medseg.studies.runner`, :mod:`medseg.studies.worker`); the report
(:mod:`medseg.studies.report`) compares each arm with the reference arm (:mod:`medseg.studies.stats`).
"""

from medseg.studies.plan import PlannedRun, expand_study, run_state
from medseg.studies.report import write_report
from medseg.studies.runner import RunOutcome, prepare_study, run_study
from medseg.studies.schema import StudyConfig, StudyError, load_study
from medseg.studies.stats import PairedComparison, paired_comparison

__all__ = [
    "PairedComparison",
    "PlannedRun",
    "RunOutcome",
    "StudyConfig",
    "StudyError",
    "expand_study",
    "load_study",
    "paired_comparison",
    "prepare_study",
    "run_state",
    "run_study",
    "write_report",
]
