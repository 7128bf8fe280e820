"""DATASETS: each entry a builder, its options class (beside the dataset) and its item class."""

from __future__ import annotations

import dataclasses

import pytest

from pixelgroup.config import ExperimentConfig, from_dict, parse_options
from pixelgroup.data import DATASETS, InstanceSample, build_dataset
from pixelgroup.data.bsds import BoundarySample
from pixelgroup.data.registry import dataset_options
from pixelgroup.errors import ConfigError
from pixelgroup.tasks import get_task


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_entry_has_frozen_options_with_defaults(name):
    entry = DATASETS[name]
    assert dataclasses.is_dataclass(entry.options)
    assert entry.options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert parse_options(entry.options, {}) == entry.options()
    assert entry.sample in (InstanceSample, BoundarySample)


def test_unknown_key_names_the_dataset_keys_and_those_the_task_took():
    with pytest.raises(
        ConfigError,
        match=r"^unknown config key 'data.options.lenght'; valid keys here: annotated_fraction, "
        r"augment, eval_length, length, max_digits, same_class_fraction, seed$",
    ):
        build_dataset("toy", None, "train", {"lenght": 3}, also=("augment",))
    with pytest.raises(ConfigError, match=r"^data.options.length must be >= 1, got 0$"):
        dataset_options("toy", {"length": 0})


def test_a_dataset_of_other_items_is_a_one_line_error(shared_data):
    with pytest.raises(
        ConfigError,
        match=r"^the dataset 'bsds' holds BoundarySample items, not the InstanceSample this task "
        r"reads; valid datasets: toy, toy3d, volume_folder, folder, coco, voc$",
    ):
        build_dataset("bsds", str(shared_data / "bsds"), "test", {})
    with pytest.raises(ConfigError, match=r"valid datasets: bsds$"):
        build_dataset("toy", None, "test", {}, sample=BoundarySample)
    cfg = from_dict(ExperimentConfig, {"data": {"name": "bsds", "root": str(shared_data / "bsds")}})
    with pytest.raises(ConfigError, match="the dataset 'bsds' holds BoundarySample items"):
        get_task("instance").build_dataset(cfg, "test")
    with pytest.raises(ConfigError, match=r"^unknown dataset 'nope'; valid datasets: toy, "):
        build_dataset("nope", None, "test", {})


def test_bsds_is_built_through_the_registry(shared_data):
    dataset = build_dataset("bsds", str(shared_data / "bsds"), "test", {}, sample=BoundarySample)
    assert isinstance(dataset[0], BoundarySample)
    with pytest.raises(ConfigError, match="data.root must name a BSDS500 folder"):
        build_dataset("bsds", None, "test", {}, sample=BoundarySample)
