import json

import pytest

from experiments.semantic_ablation import main

TINY = [
    "--seeds",
    "0",
    "1",
    "--weights",
    "0",
    "1",
    "--set",
    "train.iters_per_epoch=2",
    "--set",
    "data.options={length: 16, eval_length: 4, max_digits: 3, boundary_max_dist: 0.05}",
    "--set",
    "model.options={width: 4, num_blocks: 1, num_classes: 11}",
]


def test_tiny_ablation_writes_results_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main([*TINY, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(r["aux_weight"], r["seed"]) for r in results["runs"]] == [
        (0.0, 0),
        (0.0, 1),
        (1.0, 0),
        (1.0, 1),
    ]
    paired = results["summary"]["1.0"]["mIoU"]["paired_diff_vs_0"]
    runs = {(r["aux_weight"], r["seed"]): r["metrics"]["mIoU"] for r in results["runs"]}
    diffs = [runs[(1.0, s)] - runs[(0.0, s)] for s in (0, 1)]
    assert paired["mean"] == pytest.approx(sum(diffs) / 2)
    assert results["runs"][0]["final_pair"] is None and results["runs"][2]["final_pair"] > 0
    assert (out / "abl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main([*TINY, "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("(reused)") == 4
    assert json.loads((out / "results.json").read_text())["summary"] == results["summary"]


def test_negative_weight_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--weights", "-1"])
    assert "--weights must be >= 0" in capsys.readouterr().err
