"""``eval.tta`` reaches ``medseg evaluate`` too, and its summary says so."""

from __future__ import annotations

import json
from pathlib import Path

from medseg.data import build_reader, make_splits, save_splits
from medseg.evaluation import evaluate_run
from tests.inference.tiny import tiny_config, tiny_run

SYNTHETIC = ["data.synthetic.num_train=2", "data.synthetic.num_val=1", "data.synthetic.num_test=2", "eval.overlays=0"]


def test_evaluation_with_test_time_augmentation(tmp_path: Path) -> None:
    results = {}
    for tta in ("false", "true"):
        run = tiny_run(tmp_path / tta, *SYNTHETIC, f"eval.tta={tta}", "eval.tta_transforms=[hflip]")
        config = tiny_config(*SYNTHETIC)
        save_splits(make_splits(build_reader(config.data), config.data), run / "splits.json")
        output = evaluate_run(run, progress=False, device="cpu", workers=0)
        results[tta] = json.loads((output.directory / "cases.json").read_text())
        assert output.summary.get("tta") == (["hflip"] if tta == "true" else None)
    assert [case["case_id"] for case in results["true"]] == [case["case_id"] for case in results["false"]]
    assert results["true"] != results["false"]
