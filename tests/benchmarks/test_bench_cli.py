import pytest

from pixelgroup.cli import main


def test_quick_run_prints_and_writes_every_table(tmp_path, capsys):
    out = tmp_path / "bench.md"
    missing = tmp_path / "no-toy.mat"
    assert (
        main(["bench", "--quick", "--threads", "1", "--toy", str(missing), "--out", str(out)]) == 0
    )
    text = out.read_text()
    assert text in capsys.readouterr().out
    needles = ["GEMM GFLOP/s", "| 1024 | 8 | tiled |", "| 1024 | 8 | dense |"]
    needles += ["vMF K=4", "sklearn best", "skipped"]
    assert all(needle in text for needle in needles)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.md"]  # no temp file left behind


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--impls", "magic"], "--impls must be among"),
        (["--sizes", "0"], "must be >= 1"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--device", "cuda"], "CUDA is not available"),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, match, capsys, tmp_path):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "bench.md"
    assert main(["bench", "--sections", "gbms", *argv, "--out", str(out)]) == 2
    assert match in capsys.readouterr().err and not out.exists()


def test_batch_is_timed_and_reported(capsys):
    """--batch B times B images per call and says so in the table's caption."""
    argv = ["bench", "--sections", "gbms", "--sizes", "64", "--dims", "4", "--impls", "dense"]
    assert main([*argv, "--batch", "3", "--threads", "1"]) == 0
    assert "batch 3" in capsys.readouterr().out
