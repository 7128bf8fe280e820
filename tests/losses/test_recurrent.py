import numpy as np
import pytest
import torch

from pixelgroup.losses import RecurrentGroupingLoss, pairwise_embedding_loss
from pixelgroup.ops import normalize_to_sphere, recurrent_mean_shift


def _inputs(seed=0, d=3, h=6, w=6):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, d, h, w, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, h, w), generator=g)
    return z, labels


def test_terms_per_iteration_and_total():
    z, labels = _inputs()
    loss = RecurrentGroupingLoss(
        margin=0.3, bandwidth=0.5, num_iters=2, sample_ratio=None, iter_weights=[0.0, 1.0, 2.0]
    )
    out = loss(normalize_to_sphere(z), labels)
    assert {"loss", "loss_iter0", "loss_iter1", "loss_iter2", "pos_iter2", "neg_iter2"} <= set(out)
    torch.testing.assert_close(out["loss"], out["loss_iter1"] + 2 * out["loss_iter2"])
    points = normalize_to_sphere(z).flatten(2).transpose(1, 2)
    iterates = recurrent_mean_shift(points, 0.5, 2)
    expected = pairwise_embedding_loss(iterates[2], labels.flatten(1), 0.3)["loss"]
    torch.testing.assert_close(out["loss_iter2"], expected)


def test_gradcheck_through_loops():
    z, labels = _inputs(seed=1, h=3, w=4)
    z.requires_grad_()
    loss = RecurrentGroupingLoss(margin=0.3, bandwidth=0.6, num_iters=2, sample_ratio=None)
    assert torch.autograd.gradcheck(lambda z: loss(normalize_to_sphere(z), labels)["loss"], (z,))


def test_labels_are_nearest_downsampled():
    z, _ = _inputs(h=4, w=4)
    big = torch.arange(4).repeat_interleave(2)[None, :, None].expand(2, 8, 8) * 1
    small = big[:, ::2, ::2]
    loss = RecurrentGroupingLoss(num_iters=1, sample_ratio=None)
    x = normalize_to_sphere(z)
    torch.testing.assert_close(loss(x, big)["loss"], loss(x, small)["loss"])


def test_fresh_sample_per_site_is_reproducible():
    z, labels = _inputs(h=12, w=12)
    x = normalize_to_sphere(z)
    loss = RecurrentGroupingLoss(num_iters=2, sample_ratio=0.3, bandwidth=0.5)
    a = loss(x, labels, torch.Generator().manual_seed(3))
    b = loss(x, labels, torch.Generator().manual_seed(3))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RecurrentGroupingLoss(num_iters=2, iter_weights=[1.0]), "iter_weights"),
        (lambda: RecurrentGroupingLoss(kind="nope"), "kind"),
        (
            lambda: RecurrentGroupingLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4)),
            r"\(B, D, H, W\)",
        ),
        (
            lambda: RecurrentGroupingLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 4)),
            r"\(B, H, W\)",
        ),
        (
            lambda: RecurrentGroupingLoss()(
                normalize_to_sphere(torch.randn(2, 3, 4, 4)), torch.zeros(3, 4, 4, dtype=torch.long)
            ),
            "batch size",
        ),
    ],
)
def test_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(bandwidth=0), ValueError, r"bandwidth must be a finite number > 0, got 0"),
        (
            dict(bandwidth=float("nan")),
            ValueError,
            r"bandwidth must be a finite number > 0, got nan",
        ),
        (dict(num_iters=-1), ValueError, r"num_iters must be >= 0, got -1"),
        (dict(num_iters=2.0), TypeError, r"num_iters must be an int, got float 2\.0"),
        (dict(margin=-1), ValueError, r"margin must lie in \[0, 1\], got -1"),
        (
            dict(num_iters=1, iter_weights=[1.0, float("nan")]),
            ValueError,
            r"iter_weights\[1\] must be finite, got nan",
        ),
        (
            dict(num_iters=1, iter_weights=[1.0, -2.0]),
            ValueError,
            r"iter_weights\[1\] must be >= 0, got -2\.0",
        ),
        (
            dict(num_iters=1, iter_weights=[1.0, "a"]),
            TypeError,
            r"iter_weights\[1\] must be a number, got str",
        ),
        (
            dict(num_iters=1, iter_weights=1.0),
            TypeError,
            r"iter_weights must be a sequence of 2 numbers or None, got float",
        ),
        (dict(max_samples=0), ValueError, r"max_samples must be >= 1, got 0"),
        (dict(sample_ratio=0.0), ValueError, r"sample_ratio must lie in \(0, 1\], got 0\.0"),
        (dict(num_samples=0), ValueError, r"num_samples must be >= 1, got 0"),
        (dict(hard_fraction=2), ValueError, r"hard_fraction must lie in \(0, 1\], got 2"),
        (dict(pos_weight=float("inf")), ValueError, r"pos_weight must be finite, got inf"),
        (dict(ignore_index="void"), TypeError, r"ignore_index must be an int or None, got str"),
        (dict(impl="magic"), ValueError, r"impl must be one of .*got 'magic'"),
    ],
)
def test_constructor_checks_every_setting(kwargs, error, match):
    """Issue 14: bandwidth 0, num_iters −1, margin −1 failed only at the first forward; NaN in
    iter_weights gave a NaN loss; num_iters=2.0 failed with "can't multiply sequence"."""
    with pytest.raises(error, match=match):
        RecurrentGroupingLoss(**kwargs)


def test_numpy_and_zero_dim_tensor_settings_are_accepted():
    z, labels = _inputs()
    x = normalize_to_sphere(z)
    expected = RecurrentGroupingLoss(margin=0.3, bandwidth=0.5, num_iters=2, sample_ratio=None)
    got = RecurrentGroupingLoss(
        margin=np.float32(0.3),
        bandwidth=np.float64(0.5),
        num_iters=np.int64(2),
        iter_weights=np.ones(3),
        sample_ratio=None,
        max_samples=np.int32(100),
        neg_weight=torch.tensor(1.0),
    )
    assert got.num_iters == 2 and type(got.num_iters) is int
    torch.testing.assert_close(got(x, labels)["loss"], expected(x, labels)["loss"])


def test_forward_checks_its_inputs():
    loss = RecurrentGroupingLoss(num_iters=1)
    x = normalize_to_sphere(torch.randn(2, 3, 4, 4))
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got int"):
        loss(x, labels, 0)
    with pytest.raises(ValueError, match=r"unit-norm vectors along dim 1 \(D\)") as info:
        loss(3 * x, labels)
    assert "last dim" not in str(info.value)
    with pytest.raises(TypeError, match=r"labels must be an integer tensor"):
        loss(x, labels.float())
    with pytest.raises(ValueError, match=r"embedding must have B >= 1.*\(0, 3, 4, 4\)"):
        loss(x[:0], labels[:0])


@pytest.mark.parametrize("bandwidth", [1e-4, 5e-4])
def test_small_bandwidth_loss_agrees_across_impls_with_finite_gradients(bandwidth):
    """Issue 14: at δ = 1e-4 the tiled layer collapsed every point (loss_iter1 0.375 instead
    of 0.203) and its gradient was NaN for δ <= 5e-4."""
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    results = {}
    for impl in ("tiled", "sdpa", "dense"):
        zi = z.clone().requires_grad_()
        loss = RecurrentGroupingLoss(bandwidth=bandwidth, num_iters=2, sample_ratio=None, impl=impl)
        out = loss(normalize_to_sphere(zi), labels)
        (grad,) = torch.autograd.grad(out["loss"], zi)
        assert bool(torch.isfinite(grad).all()), impl
        results[impl] = out
    for impl in ("tiled", "dense"):
        for key in ("loss_iter1", "loss_iter2", "loss"):
            torch.testing.assert_close(
                results[impl][key], results["sdpa"][key], rtol=1e-4, atol=1e-5
            )


def test_margin_per_site_equals_one_loss_per_margin():
    z, labels = _inputs(h=5, w=5)
    x = normalize_to_sphere(z)
    margins = [0.2, 0.55, 0.9]
    per_site = RecurrentGroupingLoss(margin=margins, bandwidth=0.5, num_iters=2, sample_ratio=None)
    out = per_site(x, labels)
    for t, m in enumerate(margins):
        single = RecurrentGroupingLoss(margin=m, bandwidth=0.5, num_iters=2, sample_ratio=None)
        torch.testing.assert_close(out[f"loss_iter{t}"], single(x, labels)[f"loss_iter{t}"])
    assert not torch.allclose(out["loss_iter0"], out["loss_iter2"])


def test_sample_ratio_per_site_reaches_each_site(monkeypatch):
    import pixelgroup.losses.recurrent as recurrent

    seen = []

    def spy(x, y, **kwargs):
        seen.append((kwargs["margin"], kwargs["sample_ratio"], tuple(x.shape)))
        return pairwise_embedding_loss(x, y, **kwargs)

    monkeypatch.setattr(recurrent, "pairwise_embedding_loss", spy)
    z, labels = _inputs(h=8, w=8)
    loss = RecurrentGroupingLoss(
        margin=(0.5, 0.07, 0.07), sample_ratio=[0.5, 0.25, 1.0], num_iters=2, loop_stride=2
    )
    loss(normalize_to_sphere(z), labels, torch.Generator().manual_seed(0))
    assert seen == [(0.5, 0.5, (2, 64, 3)), (0.07, 0.25, (2, 16, 3)), (0.07, 1.0, (2, 16, 3))]


@pytest.mark.parametrize("name", ["margin", "sample_ratio"])
def test_per_site_values_need_one_per_site(name):
    with pytest.raises(ValueError, match=rf"{name} must be one value or 3 values .* got 2"):
        RecurrentGroupingLoss(num_iters=2, **{name: [0.5, 0.5]})


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 9)])
def test_loop_stride_keeps_loop_zero_at_full_resolution(h, w):
    z, labels = _inputs(seed=2, h=h, w=w)
    x = normalize_to_sphere(z)
    out = RecurrentGroupingLoss(
        margin=0.4, bandwidth=0.5, num_iters=2, sample_ratio=None, loop_stride=2
    )(x, labels)
    plain = RecurrentGroupingLoss(margin=0.4, num_iters=0, sample_ratio=None)(x, labels)
    torch.testing.assert_close(out["loss_iter0"], plain["loss_iter0"])
    pooled = normalize_to_sphere(torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True))
    loops = RecurrentGroupingLoss(margin=0.4, bandwidth=0.5, num_iters=2, sample_ratio=None)
    expected = loops(pooled, labels)
    for t in (1, 2):
        torch.testing.assert_close(out[f"loss_iter{t}"], expected[f"loss_iter{t}"])


def test_gradcheck_with_loop_stride():
    z, labels = _inputs(seed=4, h=4, w=5)
    z.requires_grad_()
    loss = RecurrentGroupingLoss(
        margin=[0.3, 0.2], bandwidth=0.6, num_iters=1, sample_ratio=None, loop_stride=2
    )
    assert torch.autograd.gradcheck(lambda z: loss(normalize_to_sphere(z), labels)["loss"], (z,))
