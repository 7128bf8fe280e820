"""``pixelgroup tune``: the sweep picks the known-best grouping setting and stores it."""

import pytest
import torch
import yaml

from pixelgroup.cli import main
from pixelgroup.data import InstanceSample
from pixelgroup.data.synthetic_cells import write_cells_folder
from pixelgroup.engine import load_checkpoint, load_model
from pixelgroup.engine.tune import sweep_grouping
from pixelgroup.errors import ConfigError
from pixelgroup.models import EmbeddingOutput
from pixelgroup.ops import normalize_to_sphere
from tests._tiny import TINY, tiny_config


def _constructed_case() -> list[tuple[EmbeddingOutput, InstanceSample]]:
    """A 16 x 16 image: background, instances A and B (40 pixels, centres at cosine 0.5) and a
    6-pixel instance C, pixels at noise 0.02 around their centres (D = 8). δ = 0.1 with
    min_area 4 finds all three; δ = 0.9 (threshold 0.19) merges A and B, δ = 0.01 leaves
    every pixel alone, min_area 8 absorbs C."""
    g = torch.Generator().manual_seed(0)
    gt = torch.zeros(16, 16, dtype=torch.int64)
    gt[1:6, 1:9] = 1
    gt[8:13, 1:9] = 2
    gt[10:12, 11:14] = 3
    centers = torch.zeros(4, 8)
    centers[0, 0] = centers[2, 2] = centers[3, 3] = 1.0
    centers[1, 1], centers[1, 2] = 0.5, 0.75**0.5  # cos(A, B) = 0.5
    points = centers[gt.flatten()] + 0.02 * torch.randn(256, 8, generator=g)
    emb = normalize_to_sphere(points, dim=1).T.reshape(1, 8, 16, 16)
    batch = InstanceSample(image=torch.zeros(1, 3, 16, 16), instance=gt[None], semantic=gt[None])
    return [(EmbeddingOutput(embedding=emb, raw=emb), batch)]


def test_sweep_picks_the_known_best_setting():
    cfg = tiny_config(grouping={"stride": 1, "num_iters": 5, "max_points": None})
    result = sweep_grouping(cfg, _constructed_case(), [0.01, 0.1, 0.9], [4, 8], "AP70")
    assert (result.best["bandwidth"], result.best["min_area"]) == (0.1, 4)
    assert result.best["AP70"] == 1.0
    assert [(r["bandwidth"], r["min_area"]) for r in result.rows][:2] == [(0.01, 4), (0.01, 8)]
    assert sorted(r["AP70"] for r in result.rows)[-2] < 1.0  # the best is the only exact one


def test_a_tie_keeps_the_setting_nearest_the_stored_one():
    """min_area 1, 2 and 4 all find the three objects: the sweep moves no further from the
    config's own setting than the scores say."""
    rows = {}
    for stored in (1, 4):
        grouping = {"stride": 1, "num_iters": 5, "max_points": None, "bandwidth": 0.1}
        cfg = tiny_config(grouping={**grouping, "min_area": stored})
        result = sweep_grouping(cfg, _constructed_case(), [0.1, 0.12], [1, 2, 4], "AP70")
        assert [r["AP70"] for r in result.rows] == [1.0] * 6  # every setting ties
        rows[stored] = (result.best["bandwidth"], result.best["min_area"])
    assert rows == {1: (0.1, 1), 4: (0.1, 4)}


def test_sweep_names_the_metrics_it_has():
    cfg = tiny_config(grouping={"stride": 1})
    with pytest.raises(ConfigError, match="no metric 'AP99'.*AP50"):
        sweep_grouping(cfg, _constructed_case(), [0.1], [4], "AP99")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(config), "-o", str(root / "run"), "--quiet"]) == 0
    return root / "run" / "checkpoint.pt"


def test_cli_prints_the_sweep_and_stores_the_winner(checkpoint, capsys):
    argv = ["tune", "--checkpoint", str(checkpoint), "--quiet", "--bandwidths", "0.05", "0.3"]
    assert main([*argv, "--min-areas", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "| bandwidth | min_area | AP70 |" in out and "checkpoint unchanged" in out
    assert out.count("(best)") == 1
    before = load_checkpoint(checkpoint)["config"]["grouping"]
    assert main([*argv, "--min-areas", "2", "--metric", "AP50"]) == 0
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if "(best)" in line).split("|")
    state = load_checkpoint(checkpoint)
    stored = state["config"]["grouping"]
    assert (stored["bandwidth"], stored["min_area"]) == (float(best[1]), int(best[2]))
    assert state["tune"]["metric"] == "AP50" and len(state["tune"]["rows"]) == 6  # 3 x 2
    assert {k: v for k, v in stored.items() if k not in ("bandwidth", "min_area")} == {
        k: v for k, v in before.items() if k not in ("bandwidth", "min_area")
    }
    assert checkpoint.with_name("checkpoint.prev.pt").is_file()
    _, cfg, _ = load_model(checkpoint)  # eval and predict read the stored setting
    assert (cfg.grouping.bandwidth, cfg.grouping.min_area) == (float(best[1]), int(best[2]))


def test_cli_maximises_the_configs_tune_metric_by_default(checkpoint, capsys):
    argv = ["tune", "--checkpoint", str(checkpoint), "--quiet", "--dry-run", "--min-areas", "2"]
    assert main([*argv, "--bandwidths", "0.3", "--set", "grouping.tune_metric=acc50"]) == 0
    out = capsys.readouterr().out
    assert "| bandwidth | min_area | acc50 |" in out and "(acc50 " in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bandwidths", "0"], "--bandwidths must be > 0"),
        (["--min-areas", "-1"], "--min-areas must be >= 0"),
        (["--metric", "nope"], "no metric 'nope'"),
    ],
)
def test_cli_bad_input_is_one_line(checkpoint, capsys, extra, message):
    assert main(["tune", "--checkpoint", str(checkpoint), "--quiet", "--dry-run", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_train_tunes_on_its_tune_split_after_the_last_step(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    argv = ["train", "--config", str(config), "--quiet", "--set", "train.tune_split=val"]
    assert main([*argv, "-o", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    best = next(line for line in out.splitlines() if "(best)" in line).split("|")
    assert "best on val:" in out and "| bandwidth | min_area | AP70 |" in out
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    stored = state["config"]["grouping"]
    assert (stored["bandwidth"], stored["min_area"]) == (float(best[1]), int(best[2]))
    assert state["tune"]["split"] == "val"
    assert len(state["tune"]["rows"]) == 10 * 4  # around the stored 0.1 and 4
    beside = yaml.safe_load((tmp_path / "run" / "config.json").read_text())
    assert beside["grouping"] == stored  # config.json still describes the checkpoint


def test_train_refuses_a_missing_tune_split_before_training(tmp_path, capsys):
    root = write_cells_folder(tmp_path / "cells", splits={"train": 4}, size=(32, 32))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    argv = ["train", "--config", str(config), "--quiet", "-o", str(tmp_path / "run")]
    assert (
        main(
            [
                *argv,
                "--set",
                "data.name=folder",
                "--set",
                f"data.root={root}",
                "--set",
                "data.options={}",
                "--set",
                "train.tune_split=val",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "val" in err and "\n" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
