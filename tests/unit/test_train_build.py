"""dlx.train.build.fill_derived: the values that come from the data and the run (the model's input shape and
outputs, the scheduler's ??? lengths, trainer.devices) written into a composed config, with real digits data."""

from collections.abc import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from dlx.data import DataSplits
from dlx.data.sklearn_sets import load_digits
from dlx.train.build import build_task, fill_derived

Compose = Callable[[list[str]], DictConfig]


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_digits()  # 8x8 images in 1 channel, ten classes


def filled(compose: Compose, digits: DataSplits, overrides: list[str], **run: int) -> DictConfig:
    cfg = compose(overrides)
    fill_derived(cfg, digits, build_task(cfg, digits, "cpu"), **run)
    return cfg


def test_ffn_gets_its_input_shape_and_number_of_outputs(compose: Compose, digits: DataSplits) -> None:
    cfg = compose(["model=ffn"])
    assert OmegaConf.missing_keys(cfg.model) == {"model.input_shape", "model.num_outputs"}  # ??? before
    fill_derived(cfg, digits, build_task(cfg, digits, "cpu"))
    assert cfg.model.input_shape == [1, 8, 8]
    assert cfg.model.num_outputs == 10
    assert OmegaConf.missing_keys(cfg) == set()
    assert cfg.model.hidden_sizes == [100]  # the rest as composed


def test_a_binary_sigmoid_loss_gets_one_output(compose: Compose, digits: DataSplits) -> None:
    # Two classes under BCE: one logit; the task decides num_outputs, fill_derived writes it in.
    x, y = digits.train.x, digits.train.y
    two = DataSplits(train=(x, y % 2), val=(digits.val.x, digits.val.y % 2), test=(digits.test.x, digits.test.y % 2),
                     class_names=["even", "odd"], pixel_mean=digits.pixel_mean, pixel_std=digits.pixel_std)
    cfg = compose(["model=ffn", "loss=bce"])
    fill_derived(cfg, two, build_task(cfg, two, "cpu"))
    assert cfg.model.num_outputs == 1


def test_a_model_without_num_outputs_gets_no_such_key(compose: Compose, digits: DataSplits) -> None:
    # GAN(input_shape, noise_dim, ...) takes no num_outputs: the key is not added (it would be rejected).
    cfg = filled(compose, digits, ["model=gan"])
    assert cfg.model.input_shape == [1, 8, 8]
    assert "num_outputs" not in cfg.model
    assert OmegaConf.missing_keys(cfg) == set()


def test_cosine_gets_t_max_equal_to_the_total_steps(compose: Compose, digits: DataSplits) -> None:
    cfg = filled(compose, digits, ["scheduler=cosine"], total_steps=345)
    assert cfg.scheduler.T_max == 345
    assert cfg.scheduler.eta_min == 0.0


def test_onecycle_gets_its_total_steps(compose: Compose, digits: DataSplits) -> None:
    cfg = filled(compose, digits, ["scheduler=onecycle"], total_steps=77)
    assert cfg.scheduler.total_steps == 77
    assert "T_max" not in cfg.scheduler and "total_iters" not in cfg.scheduler  # only the keys it has


def test_without_total_steps_the_scheduler_keeps_its_missing_length(compose: Compose, digits: DataSplits) -> None:
    cfg = filled(compose, digits, ["scheduler=cosine"])
    assert OmegaConf.is_missing(cfg.scheduler, "T_max")


def test_an_explicit_length_is_kept(compose: Compose, digits: DataSplits) -> None:
    cfg = filled(compose, digits, ["scheduler=cosine", "scheduler.T_max=10"], total_steps=345)
    assert cfg.scheduler.T_max == 10  # only ??? is filled: a value the user chose wins


def test_step_scheduler_without_a_missing_length_is_untouched(compose: Compose, digits: DataSplits) -> None:
    cfg = compose(["scheduler=step"])
    before = OmegaConf.to_container(cfg.scheduler)
    fill_derived(cfg, digits, build_task(cfg, digits, "cpu"), total_steps=345)
    assert OmegaConf.to_container(cfg.scheduler) == before
    assert before == {"_target_": "torch.optim.lr_scheduler.StepLR", "_partial_": True, "step_size": 500,
                      "gamma": 0.5}


def test_no_scheduler_stays_empty(compose: Compose, digits: DataSplits) -> None:
    cfg = filled(compose, digits, ["scheduler=none"], total_steps=345)
    assert OmegaConf.to_container(cfg.scheduler) == {}  # scheduler=none composes to an empty node: no _target_


def test_world_size_sets_trainer_devices(compose: Compose, digits: DataSplits) -> None:
    cfg = compose([])
    assert cfg.trainer.devices == 1
    task = build_task(cfg, digits, "cpu")
    fill_derived(cfg, digits, task, world_size=4)  # a launcher's process count, whatever the config said
    assert cfg.trainer.devices == 4
    fill_derived(cfg, digits, task)  # no world_size: left as it is
    assert cfg.trainer.devices == 4
