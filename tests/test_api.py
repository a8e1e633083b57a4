"""The public Python API: ``medseg.load`` (run folder, checkpoint or bundle) without Lightning, and the names of
``medseg``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import medseg
from medseg.checkpoints import CheckpointError
from tests.inference.tiny import tiny_run


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("api") / "run")


def test_load_and_predict_import_neither_lightning_nor_the_trainer(run: Path) -> None:
    output = run_python(
        f"""
        import sys
        import medseg
        assert "torch" not in sys.modules, "import medseg loads torch"
        import numpy as np
        model = medseg.load({str(run)!r}, device="cpu")
        images = [np.full((40, 30, 3), 120, np.uint8), np.zeros((20, 24, 3), np.uint8)]
        labels = model.predict(images)
        probs = model.predict_proba(images[0])
        print([a.shape for a in labels], probs.shape)
        print(sorted(name for name in sys.modules if name.split(".")[0] in ("lightning", "pytorch_lightning", "monai")
                     or name in ("medseg.engine.trainer", "medseg.engine.module", "medseg.engine.checkpoint")))
        """
    )
    assert output.splitlines() == ["[(40, 30), (20, 24)] (1, 40, 30)", "[]"]


def test_evaluation_does_not_import_lightning() -> None:
    output = run_python("import sys, medseg.evaluation; print('lightning' in sys.modules)")
    assert output.strip() == "False"


def test_a_run_folder_a_checkpoint_and_a_bundle_load_the_same_model(run: Path, tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    expected = medseg.load(run, device="cpu").predict_proba(image)
    checkpoint = run / "checkpoints" / "best.ckpt"
    np.testing.assert_array_equal(medseg.load(checkpoint, device="cpu").predict_proba(image), expected)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.ckpt").write_bytes(checkpoint.read_bytes())
    (bundle / "model.json").write_text(json.dumps({"weights": "model.ckpt"}))
    for source in (bundle, bundle / "model.json"):
        np.testing.assert_array_equal(medseg.load(source, device="cpu").predict_proba(image), expected)
    last = medseg.load(run, device="cpu", checkpoint="last").predict_proba(image)
    assert not np.array_equal(last, expected)


def test_options_reach_the_predictor(run: Path) -> None:
    model = medseg.load(run, device="cpu", tta=True, mode="sliding_window", batch_size=3)
    assert isinstance(model, medseg.Predictor)
    assert model.tta and model.mode == "sliding_window" and model.batch_size == 3


def test_what_cannot_be_loaded_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        medseg.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a run folder"):
        medseg.load(tmp_path / "empty")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"has no checkpoints/best.ckpt"):
        medseg.load(tmp_path / "run")
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(CheckpointError, match="names no weights file"):
        medseg.load(tmp_path / "b.json")


def test_public_names() -> None:
    assert "unet" in medseg.list_models()
    assert medseg.create_model("unet", in_channels=3, num_classes=1, base_channels=4).num_classes == 1
    assert {"load", "Predictor", "create_model", "list_models", "load_config"} <= set(dir(medseg))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = medseg.nothing  # type: ignore[attr-defined]
