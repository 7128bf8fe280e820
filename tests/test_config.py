from dataclasses import dataclass, field

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
