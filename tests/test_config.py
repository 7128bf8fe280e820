import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pixelgroup.config import ConfigError, from_dict, load_config, to_dict


@dataclass(frozen=True)
class _Inner:
    lr: float = 0.1
    steps: int = 10
    weights: tuple[float, ...] | None = None


@dataclass(frozen=True)
class _Outer:
    optim: _Inner = field(default_factory=_Inner)
    name: str = "toy"


def test_yaml_and_overrides_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1\nname: mine\n")
    cfg = load_config(_Outer, path, ["optim.weights=[1, 2]", "optim.steps=3"])
    assert cfg == _Outer(_Inner(lr=1.0, steps=3, weights=(1.0, 2.0)), "mine")
    assert from_dict(_Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optim.lrr=1"], "unknown config key 'optim.lrr'"),
        (["optim.steps=1.5"], "optim.steps: expected int"),
        (["optim.lr=abc"], "optim.lr: expected a number, got 'abc'"),
        (["optim.lr=true"], "optim.lr: expected a number, got True"),
        (["optim=3"], "optim: expected a mapping"),
        (["noequals"], "key=value"),
    ],
)
def test_bad_values_raise(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_Outer, None, overrides)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(_Outer, tmp_path / "nope.yaml")


def test_yaml_floats_in_exponent_form_are_numbers(tmp_path):
    """PyYAML reads `1e-3` as a string; configs and --set read it as the number."""
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 2e-3\n")
    cfg = load_config(_Outer, path, ["optim.weights=[1e-3, 5E+2]"])
    assert cfg.optim.lr == 0.002 and cfg.optim.weights == (0.001, 500.0)
    assert load_config(_Outer, None, ["optim.lr=1e-3"]).optim.lr == 0.001


def test_malformed_set_value_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set optim.weights=\[1,: not valid YAML"):
        load_config(_Outer, None, ["optim.weights=[1,"])


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_its_options_fit(path):
    """Each config's sections, typed data.options and model.options (against the model's
    constructor) are valid; building the model itself would need the datasets / weights."""
    from pixelgroup._config_io import checked_options
    from pixelgroup.config import ExperimentConfig
    from pixelgroup.models import MODELS, BoundaryNet
    from pixelgroup.tasks import get_task

    cfg = load_config(ExperimentConfig, path)
    task = get_task(cfg.task)
    registry = {**MODELS, "boundary": BoundaryNet}
    # ``auto`` lengths are chosen by training from the masks (fit_config; tested in
    # tests/data/test_instance_augment.py): a number stands in for them here
    options = {k: 4.0 if v == "auto" else v for k, v in cfg.model.options.items()}
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, options=options))
    checked_options(registry[cfg.model.name], cfg.model.options, "model.options")
    task.build_loss(cfg)
    if cfg.data.name in ("toy", "toy3d"):  # generated: no root
        task.build_dataset(cfg, "train")
    else:  # the options are read before the root is opened
        with pytest.raises(FileNotFoundError):
            task.build_dataset(cfg, cfg.data.train_split)


# data.options as checkpoints' config.json stored them before the options classes moved beside
# their datasets and tasks (one dict per task, every key the old classes had).
OLD_DATA = [
    ("voc_instance", "voc", {"augment": True, "max_size": 800, "ignore_index": 255}),
    ("proposals", "voc", {"size": [320, 320], "ignore_index": 255}),
    ("semantic", "voc", {"size": [320, 320], "ignore_index": 255, "boundary_max_dist": 0.0075}),
    ("semantic", "toy", {"length": 4, "eval_length": 2, "boundary_max_dist": 0.02}),
    (
        "boundary",
        "bsds",
        {"crop": [320, 320], "flip": True, "eval_thresholds": 99, "nms": True, "eval_workers": 1},
    ),
    (
        "instance",
        "folder",
        {"augment": True, "crop": [64, 64], "scale": [0.8, 1.25], "normalize": "percentile"},
    ),
    ("instance", "toy", {"length": 4, "eval_length": 2, "annotated_fraction": 0.5}),
    ("volume", "toy3d", {"length": 2, "eval_length": 1, "shape": [8, 16, 16]}),
]


@pytest.mark.parametrize(
    ("task", "name", "options"), OLD_DATA, ids=[f"{t}-{n}" for t, n, _ in OLD_DATA]
)
def test_old_style_config_dicts_still_load(tmp_path, task, name, options):
    """A stored config dict (``to_dict`` of an old checkpoint's config) reads and its options
    fit the task and dataset: the folders are missing, not the keys."""
    from pixelgroup.config import ExperimentConfig
    from pixelgroup.tasks import get_task

    model = {"name": "boundary"} if task == "boundary" else {"name": "toy"}
    stored = {
        "task": task,
        "data": {"name": name, "root": str(tmp_path / "missing"), "options": options},
        "model": model,
        "loss": {"num_iters": 0} if task == "boundary" else {},
    }
    cfg = from_dict(ExperimentConfig, stored)
    assert to_dict(cfg)["data"]["options"] == options
    t = get_task(task)
    t.build_loss(cfg)
    if name in ("toy", "toy3d"):
        t.build_dataset(cfg, "train")
    else:
        with pytest.raises(FileNotFoundError):
            t.build_dataset(cfg, "train")


def test_loss_keys_beyond_the_grouping_loss_belong_to_the_task():
    """They stay flat in the YAML and checkpoints; the task reads and checks them."""
    from pixelgroup.config import LEGACY_LOSS_DEFAULTS, ExperimentConfig, override_config
    from pixelgroup.errors import ConfigError
    from pixelgroup.tasks import get_task
    from pixelgroup.tasks.base import task_loss_options

    semantic = get_task("semantic")
    loss = {"aux_weight": 0.5, "aux_labels": "instance", "margin": 0.4}
    cfg = from_dict(ExperimentConfig, {"task": "semantic", "loss": loss})
    assert cfg.loss.task_options == {"aux_weight": 0.5, "aux_labels": "instance"}
    stored = to_dict(cfg)["loss"]
    assert stored["aux_weight"] == 0.5 and "task_options" not in stored
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg
    assert task_loss_options(semantic, cfg).aux_labels == "instance"
    with pytest.raises(
        ConfigError,
        match=r"^unknown config key 'loss.bce_weight'; valid keys here: aux_labels, aux_weight, "
        r"bandwidth, ",
    ):
        task_loss_options(semantic, override_config(cfg, ["loss.bce_weight=0"]))
    with pytest.raises(ConfigError, match=r"^loss.aux_weight must be >= 0, got -1.0$"):
        task_loss_options(semantic, override_config(cfg, ["loss.aux_weight=-1"]))
    # a config stored when LossConfig held all five for every task: at the defaults, dropped
    old = from_dict(ExperimentConfig, {"task": "instance", "loss": dict(LEGACY_LOSS_DEFAULTS)})
    assert old.loss.task_options == {} and "aux_weight" not in to_dict(old)["loss"]
    assert task_loss_options(get_task("instance"), old).center_weight == 1.0
    kept = from_dict(ExperimentConfig, {"task": "instance", "loss": {"bce_weight": 0.0}})
    with pytest.raises(ConfigError, match="unknown config key 'loss.bce_weight'"):
        task_loss_options(get_task("instance"), kept)


def test_train_names_the_loss_keys_of_the_task(tmp_path, capsys):
    from pixelgroup.cli import main

    argv = ["train", "--config", "toy", "--set", "loss.aux_weight=0.5", "-o", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'loss.aux_weight'; valid keys here: bandwidth, center_weight" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
