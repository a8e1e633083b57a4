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


def test_paths_in_a_file_resolve_against_its_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recipes = tmp_path / "project" / "configs"
    recipes.mkdir(parents=True)
    path = recipes / "exp.yaml"
    path.write_text(
        "data: {root: '${NOT_SET_HERE:-../data}/glas', split_file: splits.json}\nmodel: {checkpoint: ../weights/w.pt}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    config = load_config(path)
    assert config.data.root == str(tmp_path / "project" / "data" / "glas")
    assert config.data.split_file == str(recipes / "splits.json")
    assert config.model.checkpoint == str(tmp_path / "project" / "weights" / "w.pt")
    assert config.path_sources["data.root"] == "${NOT_SET_HERE:-../data}/glas"


def test_override_paths_resolve_against_the_current_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = write(tmp_path, "data: {root: here}\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_config(path).data.root == str(tmp_path / "here")
    overridden = load_config(path, ["data.root=there"])
    assert overridden.data.root == str(tmp_path.parent / "there")
    assert overridden.path_sources == {"data.root": "there"}


def test_a_set_variable_is_a_path_of_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    recipes = tmp_path / "configs"
    recipes.mkdir()
    path = recipes / "exp.yaml"
    path.write_text("data: {root: '${MY_DATA:-../data}/kvasir'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MY_DATA", "datasets")
    assert load_config(path).data.root == str(tmp_path / "datasets" / "kvasir")


def test_saved_config_works_from_another_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run folder's config.yaml holds the absolute data root and keeps the configured text as a comment."""
    path = write(tmp_path, "data: {root: '${NOT_SET_HERE:-data}/ph2'}\n")
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    saved = tmp_path / "run" / "config.yaml"
    saved.parent.mkdir()
    save_config(load_config(path), saved)
    text = saved.read_text()
    assert "# data.root was configured as ${NOT_SET_HERE:-data}/ph2" in text
    monkeypatch.chdir(tmp_path / "run")
    assert load_config(saved).data.root == str(tmp_path / "data" / "ph2")


def test_shipped_configs_find_the_shared_data_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MEDSEG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config(REPO / "configs" / "unet-glas.yaml").data.root == str(REPO.parent / "shared" / "data" / "glas")


def test_eval_batch_size_auto_is_one_on_the_cpu_and_16_on_a_gpu() -> None:
    from pydantic import ValidationError

    from medseg.config import eval_batch_size

    config = ExperimentConfig()
    assert config.eval.batch_size == "auto"
    assert eval_batch_size("auto", "cpu") == 1 and eval_batch_size("auto", "cuda") == 16
    assert eval_batch_size(3, "cuda") == 3
    with pytest.raises(ValidationError, match="at least 1, or auto"):
        ExperimentConfig.model_validate({"eval": {"batch_size": 0}})
