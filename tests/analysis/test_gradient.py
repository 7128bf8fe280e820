import math

import pytest
import torch

from pixelgroup.analysis.gradient import (
    euclidean_gbms,
    find_modes,
    make_mixture,
    regressor,
    run_gradient_study,
    supervised_updates,
)


def gbms_reference(x: torch.Tensor, bandwidth: float, num_iters: int) -> torch.Tensor:
    """Point-by-point loops: every point moves to the Gaussian-weighted mean of the old points."""
    values = [float(v) for v in x]
    iterates = [list(values)]
    for _ in range(num_iters):
        moved = []
        for xi in values:
            weights = [math.exp(-((xi - xj) ** 2) / (2 * bandwidth**2)) for xj in values]
            moved.append(sum(w * xj for w, xj in zip(weights, values, strict=True)) / sum(weights))
        values = moved
        iterates.append(list(values))
    return torch.tensor(iterates, dtype=torch.float64)


def test_make_mixture_shapes_labels_and_seed():
    x, labels = make_mixture(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert x.shape == labels.shape == (150,) and x.dtype == labels.dtype == torch.float64
    assert torch.equal(labels, torch.where(x < 3.5, 1.0, 2.0).double())
    assert abs(float(x[:50].mean()) - 3.0) < 0.1 and abs(float(x[100:].mean()) - 5.0) < 0.1
    again, _ = make_mixture(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(x, again)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (2.5, TypeError)])
def test_make_mixture_rejects_bad_size(bad, error):
    with pytest.raises(error, match="points_per_cluster"):
        make_mixture(bad)


def test_euclidean_gbms_matches_reference(device):
    x = torch.randn(12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = euclidean_gbms(x.to(device), 0.3, 3)
    assert out.shape == (4, 12) and out.dtype == x.dtype and out.device.type == device.type
    torch.testing.assert_close(out.cpu(), gbms_reference(x, 0.3, 3))


def test_euclidean_gbms_gradcheck_and_invariants():
    x = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: euclidean_gbms(v, 0.5, 2), (x,))
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(
            euclidean_gbms(x[perm], 0.5, 2), euclidean_gbms(x, 0.5, 2)[:, perm]
        )
        still = torch.full((5,), 4.0, dtype=torch.float64)  # one cluster is a fixed point
        torch.testing.assert_close(euclidean_gbms(still, 0.1, 3)[-1], still)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.zeros(2, 3), 0.1, 1), ValueError, r"\(N,\)"),
        ((torch.zeros(3), 0.0, 1), ValueError, "bandwidth must be a finite number > 0"),
        ((torch.zeros(3), 0.1, -1), ValueError, "num_iters must be >= 0"),
        (([1.0, 2.0], 0.1, 1), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_euclidean_gbms_rejects_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        euclidean_gbms(*args)


def test_updates_without_mean_shift_are_plain_regression_steps():
    x, labels = make_mixture(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    trajectory = supervised_updates(x, labels, 0, steps=3, lr=0.1)
    n, expected = x.numel(), x.clone()
    for step in range(1, 4):
        # d/dx of (0.5 x - 0.5 - y)^2 / (N + 1), times lr * N
        expected = expected - 0.1 * n * (regressor(expected) - labels) / (n + 1)
        torch.testing.assert_close(trajectory[step], expected)


def test_updates_reject_mismatched_labels():
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\), got \(3,\)"):
        supervised_updates(torch.zeros(4), torch.ones(3), 1)


def test_find_modes_groups_close_values():
    modes, assignment = find_modes(torch.tensor([5.0, 3.0, 5.01, 3.02, 4.0]), tol=0.05)
    torch.testing.assert_close(modes, torch.tensor([3.01, 4.0, 5.005]))
    assert assignment.tolist() == [2, 0, 2, 0, 1]


def test_measured_conclusion_holds_at_reduced_size():
    """GBMS in the loop: 2 modes, >= 95 % correct and on target; without it fewer on target."""
    without = run_gradient_study(0, points_per_cluster=100, seed=0)
    for k in (3, 5):
        with_gbms = run_gradient_study(k, points_per_cluster=100, seed=0)
        assert with_gbms.num_modes == 2
        assert with_gbms.correct_fraction >= 0.95 and with_gbms.on_target_fraction >= 0.95
        assert without.on_target_fraction < with_gbms.on_target_fraction
        # through the loops the middle cluster moves as a group (keeps its spread); the
        # control with the same K loss sites on the raw points collapses it point by point
        control = run_gradient_study(k, points_per_cluster=100, seed=0, through_gbms=False)
        assert with_gbms.group_std > 10 * control.group_std
    assert without.on_target_fraction < 0.95
    assert without.trajectory.shape == (31, 300)


def test_study_follows_dtype():
    result = run_gradient_study(1, points_per_cluster=5, steps=2, dtype=torch.float64)
    assert result.trajectory.dtype == torch.float64 and result.clustered.shape == (15,)


def test_run_gradient_studies_checks_every_run_first(monkeypatch):
    from pixelgroup.analysis import gradient
    from pixelgroup.errors import InputError

    def no_study(*args, **kwargs):
        raise AssertionError("a study ran before the arguments were checked")

    monkeypatch.setattr(gradient, "run_gradient_study", no_study)
    with pytest.raises(InputError, match="num_loops must be >= 0, got -2"):
        gradient.run_gradient_studies([(3, True), (-2, True)])
    with pytest.raises(InputError, match="lr must be a finite number > 0, got 0.0"):
        gradient.run_gradient_studies([(0, True)], lr=0.0)
    monkeypatch.undo()
    results = gradient.run_gradient_studies([(0, True), (1, False)], points_per_cluster=5, steps=1)
    assert set(results) == {(0, True), (1, False)} and not results[1, False].through_gbms
