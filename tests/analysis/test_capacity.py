import math

import pytest
import torch

from pixelgroup.analysis.capacity import (
    cap_packing_upper_bound,
    capacity_row,
    empirical_max_groups,
    exact_max_groups,
    kernel_weight_at_margin,
    lp_upper_bound,
    margin_to_cosine,
    min_feasible_margin,
    pack_sphere,
    upper_bound,
)

FAST = {"restarts": 2, "steps": 200}  # converges to ~1e-6 on these small cases


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_nonpositive_cosine_allows_2d_groups():
    assert exact_max_groups(3, 0.5) == 6
    assert [exact_max_groups(d, 0.5) for d in (1, 2, 8, 64)] == [2, 4, 16, 128]
    assert lp_upper_bound(3, 0.5) == pytest.approx(6.0)  # the LP bound is tight at t = 0


@pytest.mark.parametrize("dim", [1, 2, 3, 8, 64])
def test_negative_cosine_allows_the_simplex(dim):
    simplex_margin = (1 - 1 / dim) / 2  # cosine −1/D
    assert exact_max_groups(dim, simplex_margin) == dim + 1
    assert exact_max_groups(dim, 0.4999) == dim + 1
    assert min_feasible_margin(dim + 1, dim) == pytest.approx(simplex_margin)


@pytest.mark.parametrize("dim", [1, 2, 3, 8, 64, 1024])
def test_margin_0_1_is_infeasible_for_three_groups_in_any_dim(dim):
    assert exact_max_groups(dim, 0.1) == 2
    assert min_feasible_margin(3) == pytest.approx(0.25)
    assert not min_feasible_margin(3, dim) <= 0.1  # 0.25, or nan (> 0.5) when D = 1


def test_min_feasible_margin_cases():
    assert min_feasible_margin(2) == 0.0
    assert min_feasible_margin(5, 3) == 0.5 and min_feasible_margin(6, 3) == 0.5
    assert math.isnan(min_feasible_margin(7, 3))
    assert min_feasible_margin(1000) == pytest.approx(998 / 1998)  # tends to 0.5


def test_known_exact_values_and_bounds_agree():
    assert exact_max_groups(2, 0.75) == 6  # hexagon: 60 degrees
    assert exact_max_groups(3, 0.75) is None
    # icosahedron: 12 points at 63.4 degrees; the bounds must admit it
    assert upper_bound(3, 0.75) >= 12 and cap_packing_upper_bound(3, 0.75) >= 12
    assert lp_upper_bound(3, 0.75) == math.inf  # t = 0.5 >= 1/D: the LP bound does not apply
    for dim, margin in [(3, 0.6), (4, 0.6), (8, 0.55)]:
        assert upper_bound(dim, margin) >= 2 * dim


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_packing_reaches_regular_simplex_and_cross_polytope(dim):
    simplex = pack_sphere(dim + 1, dim, **FAST, generator=gen(dim))
    assert simplex.max_cosine == pytest.approx(-1 / dim, abs=1e-5)
    torch.testing.assert_close(simplex.points.norm(dim=1), torch.ones(dim + 1, dtype=torch.float64))
    gram = simplex.points @ simplex.points.T
    off = gram[~torch.eye(dim + 1, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / dim), atol=1e-5, rtol=0)
    cross = pack_sphere(2 * dim, dim, **FAST, generator=gen(dim))
    assert cross.max_cosine == pytest.approx(0, abs=1e-5)


def test_packing_is_seeded_and_reports_angle():
    a = pack_sphere(5, 3, steps=50, generator=gen(1))
    b = pack_sphere(5, 3, steps=50, generator=gen(1))
    torch.testing.assert_close(a.points, b.points)
    assert a.min_angle_deg == pytest.approx(math.degrees(math.acos(a.max_cosine)))
    assert a.margin == pytest.approx((1 + a.max_cosine) / 2)


def test_three_groups_cannot_be_packed_below_quarter_margin():
    assert pack_sphere(3, 8, **FAST, generator=gen()).margin >= 0.25 - 1e-6


def test_empirical_search_finds_known_maxima():
    assert empirical_max_groups(3, 0.5, **FAST, generator=gen())[0] == 6
    n, packing = empirical_max_groups(3, 0.75, **FAST, generator=gen())
    assert n == 12 and packing.min_angle_deg >= 60.0 - 0.1  # icosahedron (Tammes n = 12)
    assert empirical_max_groups(3, 0.1, **FAST, generator=gen())[0] == 2
    assert empirical_max_groups(8, 0.9, max_groups=20, steps=50, generator=gen())[0] == 20


def test_capacity_row():
    row = capacity_row(3, 0.5, **FAST, generator=gen())
    assert (row.exact, row.upper, row.empirical) == (6, 6.0, 6)
    assert row.cosine == 0.0 and row.min_angle_deg == pytest.approx(90.0, abs=0.01)


def test_kernel_weight_at_margin():
    assert kernel_weight_at_margin(0.5, 0.1) == pytest.approx(math.exp(-100))
    assert kernel_weight_at_margin(0.5, 0.5) == pytest.approx(math.exp(-4))
    assert kernel_weight_at_margin(1.0, 0.2) == 1.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: margin_to_cosine(1.5), ValueError, r"margin \(calibrated α\) must be in \[0, 1\]"),
        (lambda: margin_to_cosine("0.5"), TypeError, "margin must be a number"),
        (
            lambda: exact_max_groups(0, 0.5),
            ValueError,
            r"dim \(embedding dimension D\) must be >= 1",
        ),
        (lambda: exact_max_groups(2.0, 0.5), TypeError, "dim must be an int"),
        (lambda: min_feasible_margin(1), ValueError, r"groups \(number of groups n\) must be >= 2"),
        (lambda: pack_sphere(3, 2, restarts=0), ValueError, "restarts must be an int >= 1"),
        (lambda: kernel_weight_at_margin(0.5, 0.0), ValueError, "bandwidth must be"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_capacity_table_checks_every_argument_before_packing(monkeypatch):
    from pixelgroup.analysis import capacity
    from pixelgroup.errors import InputError

    def no_packing(*args, **kwargs):
        raise AssertionError("packed before the arguments were checked")

    monkeypatch.setattr(capacity, "pack_sphere", no_packing)
    for kwargs, match in [
        ({"dims": [3, 0]}, r"dim \(embedding dimension D\) must be >= 1, got 0"),
        ({"margins": [0.5, 2.0]}, r"margin \(calibrated α\) must be in \[0, 1\], got 2.0"),
        ({"max_groups": 0}, "max_groups must be an int >= 1, got 0"),
        ({"steps": 0}, "steps must be an int >= 1, got 0"),
    ]:
        args = {"dims": [3], "margins": [0.5], **kwargs}
        with pytest.raises(InputError, match=match):
            capacity.capacity_table(args.pop("dims"), args.pop("margins"), **args)
    monkeypatch.undo()
    rows = capacity.capacity_table([2], [0.25, 0.5], restarts=1, steps=50)
    assert [(r.dim, r.margin, r.exact) for r in rows] == [(2, 0.25, 3), (2, 0.5, 4)]
