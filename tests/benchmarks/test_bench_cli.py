import os

import numpy as np
import pytest

from pixelgroup.analysis import benchmark
from pixelgroup.cli import main


def test_quick_run_prints_and_writes_every_table(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["bench", "--quick", "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out
    needles = ["GEMM GFLOP/s", "| 1024 | 8 | tiled |", "| 1024 | 8 | dense |"]
    needles += ["vMF K=4", "sklearn best", "(toy rows skipped: no toy fixture given, see --toy)"]
    needles += ["(merge section skipped: no toy fixture given, see --toy)"]
    needles += ["(boundary section skipped: no BSDS folder given, see --bsds)"]
    assert all(needle in text for needle in needles)
    assert [p.name for p in tmp_path.iterdir()] == ["bench.md"]  # no temp file left behind


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--impls", "magic"], "impls must be one of ('auto', 'tiled', 'sdpa', 'dense')"),
        (["--sizes", "0"], "sizes must be an int >= 1, got 0"),
        (["--batch", "0"], "batch must be an int >= 1, got 0"),
        (["--sections", "merge", "--toy-images", "0"], "toy_images must be an int >= 1, got 0"),
        (["--device", "cuda"], "CUDA is not available"),
        (["--sections", "merge", "--toy", "no-such.mat"], "--toy file not found: no-such.mat"),
        (["--sections", "boundary", "--bsds", "no-such-dir"], "--bsds is not a folder"),
    ],
)
def test_bad_arguments_give_one_line_errors(argv, match, capsys, tmp_path):
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    out = tmp_path / "bench.md"
    assert main(["bench", "--sections", "gbms", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelgroup bench: error: ") and match in err and not out.exists()
    assert len(err.strip().splitlines()) == 1


def test_batch_is_timed_and_reported(capsys):
    """--batch B times B images per call and says so in the table's caption."""
    argv = ["bench", "--sections", "gbms", "--sizes", "64", "--dims", "4", "--impls", "dense"]
    assert main([*argv, "--batch", "3", "--threads", "1"]) == 0
    assert "batch 3" in capsys.readouterr().out


def test_library_returns_tables_and_reads_the_toy_fixture(shared_data):
    rows = []
    lines = benchmark.bench_gbms([64], [4], ["tiled"], iters=1, gemm_n=64, log=rows.append)
    assert lines[-1].startswith("| 64 | 4 | tiled |") and rows == [lines[-1]]
    merge = benchmark.bench_merge(shared_data / "toy-gbms" / "loops_bandwidth0.2.mat", 1)
    assert merge[0].startswith("Merged-point inference on 1 toy images")
    assert [line.split(" | ")[0] for line in merge[-2:]] == ["| 10", "| 20"]
    with pytest.raises(FileNotFoundError, match="toy GBMS fixture not found"):
        benchmark.load_toy(shared_data / "no-such.mat", 1)


def test_boundary_section_compares_with_pyedgeeval(shared_data, tmp_path, capsys):
    """--quick: 3 thresholds on 96x96 crops of the samples, one and five annotators."""
    out = tmp_path / "bench.md"
    argv = ["bench", "--sections", "boundary", "--quick", "--bsds", str(shared_data / "bsds")]
    assert main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    assert "T = 3 thresholds" in text and "cropped to 96x96" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1 annotator |")]
    rows += [line for line in text.splitlines() if line.startswith("| 5 annotators |")]
    assert len(rows) == 2
    try:
        import pyEdgeEval  # noqa: F401
    except ImportError:
        assert "(pyEdgeEval not installed" in text
    else:
        assert all(float(row.split(" | ")[-1].rstrip(" |")) <= 2e-3 for row in rows)  # Δ
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "--sections", "boundary", "--bsds", str(empty)]) == 2
    assert "holds no <id>.mat" in capsys.readouterr().err


def test_five_annotators_stand_in():
    gt = np.zeros((1, 40, 48), bool)
    gt[0, 10:13, 5:40] = True  # a 3 px thick line
    five = benchmark.five_annotators(gt, seed=0)
    assert five.shape == (5, 40, 48) and five[0].sum() < gt.sum()
    assert five[1][11:14].any() and not five[1][:11].any()  # shifted down by one pixel
    real = np.stack([gt[0]] * 6)
    np.testing.assert_array_equal(benchmark.five_annotators(real), real[:5])


def test_targets_list_every_target_with_a_ratio_or_a_note(monkeypatch):
    from pixelgroup.analysis import targets

    # scikit-learn's fits take most of a real run; their numbers come from grouping_numbers,
    # which the quick bench above runs for real
    fits = dict.fromkeys(["ours", "all", "est", "best"], 0.01)
    fits |= {"ours_ari": 1.0, "all_ari": 1.0, "est_ari": 1.0, "best_ari": 1.0, "factor": 1.0}
    monkeypatch.setattr(targets, "grouping_numbers", lambda *args: fits)
    steps = []
    lines = targets.bench_targets(
        lambda: steps.append(1), 1800, quick=True, gemm_n=256, layer_n=256, log=lambda s: None
    )
    text = "\n".join(lines)
    assert "torch threads" in lines[0] and "load average" in lines[0]
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    names = ["subnormal", "make demo", "fp32 GEMM", "D = 3, forward", "D = 3, forward+back"]
    names += ["D = 8, forward", "D = 8, forward+back", "0 busy", "1 busy", "eval-boundaries"]
    assert [any(n in row for row in rows) for n in names] == [True] * len(names)
    assert len(rows) == len(names) and len(steps) == 2 + 2 * 2  # warm-ups, then 2 rounds x 2
    assert "skipped: no --bsds folder" in text and "200-image set" in text
    for row in rows[:-1]:  # every measured row has a ratio and says whether it is met
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) >= 0 and cells[4] in ("yes", "**no**")


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_the_flush_scope_restores_the_callers_state(caller_flushes):
    import torch

    from pixelgroup.analysis import targets

    if not torch.set_flush_denormal(caller_flushes):
        pytest.skip("no flush-to-zero on this CPU")
    try:
        with targets._flush(not caller_flushes):
            assert targets.flushes_subnormals() is not caller_flushes
        assert targets.flushes_subnormals() is caller_flushes
    finally:
        torch.set_flush_denormal(False)


def test_the_default_threads_leave_one_core_free_and_respect_omp_num_threads(monkeypatch):
    import torch

    from pixelgroup.cli import default_threads, set_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, expected in ((set(range(4)), 3), ({0}, 1), ({0, 1}, 1)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, c=cores: c)
        assert default_threads() == expected
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
        set_threads(None)
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torch's (torchrun's) choice stands
        assert default_threads() is None
        set_threads(None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
