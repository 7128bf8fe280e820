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
