import pytest

from pixelgroup.cli import main


@pytest.mark.parametrize("argv", [["analyze"], ["analyze", "gradient"], ["analyze", "capacity"]])
def test_help_has_examples(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out if len(argv) > 1 else "capacity" in out and "gradient" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["capacity", "--dim", "0", "--margin", "0.5"], "dim (embedding dimension D) must be >= 1"),
        (["capacity", "--dim", "3", "--margin", "1.5"], r"must be in [0, 1], got 1.5"),
        (["capacity", "--dim", "3", "--margin", "-0.1"], r"must be in [0, 1], got -0.1"),
        (["capacity", "--dim", "3", "--margin", "0.5", "--groups", "1"], "groups (number of"),
        (["capacity", "--dim", "3", "--margin", "0.5", "--bandwidth", "0"], "bandwidth must be a"),
        (["capacity", "--dim", "3", "--margin", "0.5", "--max-groups", "0"], "max_groups must"),
        (["capacity", "--dim", "3", "--margin", "0.5", "--restarts", "0"], "restarts must be an"),
        (["gradient", "--loops", "3", "-1"], "num_loops must be >= 0, got -1"),
        (["gradient", "--bandwidth", "0"], "bandwidth must be a finite number > 0, got 0.0"),
        (["gradient", "--steps", "-1"], "steps must be >= 0, got -1"),
        (["gradient", "--points-per-cluster", "0"], "points_per_cluster must be >= 1, got 0"),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, match, capsys):
    assert main(["analyze", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelgroup analyze: error: ") and match in err
    assert len(err.strip().splitlines()) == 1


def test_capacity_prints_table_and_writes_figure(tmp_path, capsys):
    figure = tmp_path / "cap.png"
    argv = ["analyze", "capacity", "--dim", "3", "--margin", "0.1", "0.5", "--groups", "4"]
    assert main([*argv, "--steps", "200", "--restarts", "2", "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("   3 ")]
    assert [(r[1], r[4], r[7]) for r in rows] == [("0.1", "2", "2"), ("0.5", "6", "6")]
    assert "4 groups in D = 3: smallest feasible α 0.3333" in out
    assert "feasible at α = 0.1: no, 0.5: yes" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradient_prints_measurements_and_writes_figures(tmp_path, capsys):
    argv = ["analyze", "gradient", "--loops", "0", "2", "--points-per-cluster", "20"]
    assert main([*argv, "--steps", "3", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GBMS loops" in out and "control" in out and "raw points" in out
    for name in ("K0_summary", "K0_trajectories", "K2_summary", "K2_trajectories"):
        assert (tmp_path / f"gradient_{name}.png").stat().st_size > 1000
