from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medseg.config import ConfigError, ExperimentConfig, load_config, resolve_path, save_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntrain: {epochs: 5}\n")
    config = load_config(
        path,
        [
            "train.epochs=3",
            "data.image_size=64",
            "model.params.bilinear=true",
            "data.label_map={255: 1}",
            "optim.betas=[0.8, 0.9]",
        ],
    )
    assert config.train.epochs == 3
    assert config.data.image_size == 64
    assert config.model.params == {"bilinear": True}
    assert config.data.label_map == {255: 1}
    assert config.optim.betas == (0.8, 0.9)
    assert config.binary and config.out_channels == 1


def test_multiclass_out_channels() -> None:
    config = load_config(None, ["data.num_classes=4"])
    assert not config.binary and config.out_channels == 4


def test_unknown_key_names_key_and_choices(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'train\.epoch' \(did you mean train\.epochs\?\); "
        r"valid keys under 'train': epochs, seed",
    ):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*valid keys at the top level: name"):
        load_config(write(tmp_path, "trian: {epochs: 1}\n"))


def test_wrong_type_names_key() -> None:
    with pytest.raises(ConfigError, match=r"config key 'train\.epochs': .*integer.*\(got 'many'\)"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(
        ConfigError, match=r"config key 'optim\.name': Input should be 'adamw', 'adam', 'nadam' or 'sgd'"
    ):
        load_config(None, ["optim.name=rmsprop"])


def test_bad_override_and_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not of the form"):
        load_config(None, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_round_trip(tmp_path: Path) -> None:
    config = load_config(None, ["name=abc", "data.num_classes=3", "train.precision=32"])
    save_config(config, tmp_path / "config.yaml")
    again = ExperimentConfig.model_validate(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == config
    assert again.train.precision == "32"


def test_resolve_path_expands_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDSEG_TEST_ROOT", str(tmp_path))
    assert resolve_path("${MEDSEG_TEST_ROOT}/kvasir") == tmp_path / "kvasir"
    monkeypatch.delenv("MEDSEG_TEST_ROOT")
    assert resolve_path("${MEDSEG_TEST_ROOT:-/data}/kvasir") == Path("/data/kvasir")
    with pytest.raises(ConfigError, match=r"MEDSEG_TEST_ROOT"):
        resolve_path("${MEDSEG_TEST_ROOT}/kvasir")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    load_config(path)
