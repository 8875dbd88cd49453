"""dlx.config.schema: a trainer option of the user's that sets some keys takes every other one from
conf/trainer/default.yaml; and a trainer key left without a value is reported by check_config by its full name."""

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf, open_dict

from dlx.config.checks import check_config
from dlx.config.schema import config_dir, schema
from dlx.errors import DlxError

Compose = Callable[..., DictConfig]


def default_trainer() -> dict:
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "trainer" / "default.yaml"))


def user_trainer(tmp_path: Path, yaml: str) -> Path:
    folder = tmp_path / "my_conf"
    (folder / "trainer").mkdir(parents=True)
    (folder / "trainer" / "fast.yaml").write_text(yaml)
    return folder


def test_a_partial_trainer_option_takes_the_other_keys_from_the_default(compose: Compose, tmp_path: Path) -> None:
    cfg = compose(["trainer=fast"], user_trainer(tmp_path, "max_epochs: 3\n"))
    trainer = OmegaConf.to_container(cfg.trainer)
    default = default_trainer()
    assert default["max_epochs"] == 10  # the default differs, so the option's value is seen to win
    assert trainer == {**default, "max_epochs": 3}
    assert OmegaConf.missing_keys(cfg.trainer) == set()
    check_config(cfg)  # nothing left without a value


def test_a_partial_trainer_option_can_set_a_nested_key(compose: Compose, tmp_path: Path) -> None:
    cfg = compose(["trainer=fast"], user_trainer(tmp_path, "batch_size: 8\nmonitor:\n  mode: min\n"))
    assert (cfg.trainer.batch_size, cfg.trainer.monitor.mode) == (8, "min")
    assert cfg.trainer.monitor.metric == default_trainer()["monitor"]["metric"]


def test_overrides_still_win_over_a_user_trainer_option(compose: Compose, tmp_path: Path) -> None:
    cfg = compose(["trainer=fast", "trainer.max_epochs=5", "trainer.seed=9"], user_trainer(tmp_path, "max_epochs: 3\n"))
    assert (cfg.trainer.max_epochs, cfg.trainer.seed) == (5, 9)


def test_the_schema_keeps_its_types_with_the_defaults_values() -> None:
    trainer = schema().trainer
    assert OmegaConf.to_container(trainer) == default_trainer()
    with pytest.raises(Exception, match="batch_size"):  # typed: a string is no batch size
        trainer.batch_size = "abc"


def test_the_default_trainer_option_composes_to_default_yaml(compose: Compose) -> None:
    assert OmegaConf.to_container(compose([]).trainer) == default_trainer()


def test_a_missing_trainer_key_is_named_once_by_its_full_key(compose: Compose) -> None:
    cfg = compose([])
    with open_dict(cfg):
        cfg.trainer.smoke = "???"
    assert OmegaConf.is_missing(cfg.trainer, "smoke")
    with pytest.raises(DlxError) as raised:
        check_config(cfg)
    message = str(raised.value)
    assert "trainer.trainer.smoke" not in message
    assert message.count("trainer.smoke") == 1
    assert message.startswith("trainer.smoke has no value.")


def test_several_missing_keys_are_listed_sorted_by_full_key(compose: Compose) -> None:
    cfg = compose([])
    with open_dict(cfg):
        cfg.trainer.seed = "???"
        cfg.trainer.monitor.mode = "???"
        cfg.augment.shift = "???"
    with pytest.raises(DlxError) as raised:
        check_config(cfg)
    assert str(raised.value).startswith("augment.shift, trainer.monitor.mode, trainer.seed have no value.")
