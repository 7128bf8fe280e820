import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelgroup.losses import instance_pair_weights, pairwise_embedding_loss
from pixelgroup.ops import normalize_to_sphere
from tests._reference import pair_loss_reference, random_sphere


def test_every_label_pair_block_weighs_one_over_k_squared():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 5, 5, 5, 5, 5])
    w = instance_pair_weights(labels, torch.float64)
    ids = labels.unique()
    for a in ids:
        for b in ids:
            block = w[labels == a][:, labels == b].sum()
            assert block.item() == pytest.approx(1 / len(ids) ** 2, abs=1e-15)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-15)


def test_hand_computed_four_pixel_example():
    # pixels 0,1 label A at cos 1; pixel 2 label A orthogonal to them; pixel 3 label B
    # opposite pixel 0. Calibrated s: s01 = 1, s02 = s12 = 0.5, s03 = s13 = 0, s23 = 0.5.
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    y = torch.tensor([[0, 0, 0, 1]])
    out = pairwise_embedding_loss(x, y, margin=0.25)
    # K = 2, n_A = 3, n_B = 1. Positive A-A block: w = 1/(9*4), costs 1 - s summed over the 9
    # ordered pairs: pairs (0,2),(2,0),(1,2),(2,1) cost 0.5 each -> 2.0. B-B: self-pair, cost 0.
    assert out["pos"].item() == pytest.approx(2.0 / 36)
    # Negative A-B and B-A pairs: w = 1/(3*4); hinge max(0, s - 0.25): only (2,3),(3,2) -> 0.25.
    assert out["neg"].item() == pytest.approx(2 * 0.25 / 12)
    assert out["loss"].item() == pytest.approx(2.0 / 36 + 0.5 / 12)


@pytest.mark.parametrize("kind", ["linear", "squared", "logistic"])
def test_matches_reference(kind):
    x = random_sphere(2, 15, 4, seed=1)
    y = torch.randint(0, 4, (2, 15), generator=torch.Generator().manual_seed(0))
    out = pairwise_embedding_loss(x, y, margin=0.3, pos_weight=1.0, neg_weight=5.0, kind=kind)
    refs = [pair_loss_reference(x[b], y[b], 0.3, 1.0, 5.0, kind) for b in range(2)]
    for key, i in (("pos", 0), ("neg", 1), ("loss", 2)):
        expected = sum(r[i] for r in refs) / 2
        torch.testing.assert_close(out[key], expected)


def test_zero_for_perfect_embedding_with_feasible_margin():
    basis = torch.eye(4, dtype=torch.float64)  # 4 mutually orthogonal groups: s = 0.5 between
    y = torch.arange(4).repeat_interleave(5)[None]
    x = basis[y[0]][None]
    out = pairwise_embedding_loss(x, y, margin=0.5)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["linear", "squared", "logistic"])
def test_gradcheck(kind):
    z = torch.randn(1, 10, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 0, 1, 2]])

    def fn(z):
        return pairwise_embedding_loss(normalize_to_sphere(z, dim=-1), y, 0.2, kind=kind)["loss"]

    assert torch.autograd.gradcheck(fn, (z,))


def test_linear_terms_of_a_batch_equal_the_pairs_of_each_image():
    """The linear kind's batched terms (closed-form positive term, one (B, n, n) hinge) equal
    the pair sums of pairwise._image_loss image by image, values and gradients."""
    from pixelgroup.losses import pairwise

    g = torch.Generator().manual_seed(3)
    x = normalize_to_sphere(torch.randn(3, 12, 5, dtype=torch.float64, generator=g), dim=-1)
    y = torch.stack(
        [
            torch.randint(0, 4, (12,), generator=g),
            torch.full((12,), 7),  # one label: no negative pairs
            torch.randint(0, 60000, (12,), generator=g),  # large ids, mostly singletons
        ]
    )
    x.requires_grad_(True)
    pos, neg = pairwise._linear_terms(x, y, 0.3)
    terms = [pairwise._image_loss(x[b], y[b], 0.3, "linear", None) for b in range(3)]
    torch.testing.assert_close(pos, torch.stack([t[0] for t in terms]), atol=1e-14, rtol=0)
    torch.testing.assert_close(neg, torch.stack([t[1] for t in terms]), atol=1e-14, rtol=0)
    (got,) = torch.autograd.grad((pos + 5 * neg).sum(), x)
    (want,) = torch.autograd.grad(sum(t[0] + 5 * t[1] for t in terms), x)
    torch.testing.assert_close(got, want, atol=1e-13, rtol=0)
    z = torch.randn(3, 8, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(z):
        return sum(pairwise._linear_terms(normalize_to_sphere(z, dim=-1), y[:, :8], 0.2))

    assert torch.autograd.gradcheck(lambda z: fn(z).sum(), (z,))


def test_images_of_different_sample_sizes_match_the_reference():
    x = random_sphere(2, 15, 4, seed=2)
    y = torch.randint(0, 4, (2, 15), generator=torch.Generator().manual_seed(1))
    y[1, :5] = 255  # the second image has 10 valid pixels, the first 15
    out = pairwise_embedding_loss(x, y, margin=0.3)
    refs = [pair_loss_reference(x[0], y[0], 0.3, 1.0, 1.0, "linear")]
    refs.append(pair_loss_reference(x[1, 5:], y[1, 5:], 0.3, 1.0, 1.0, "linear"))
    torch.testing.assert_close(out["loss"], (refs[0][2] + refs[1][2]) / 2)


def test_ignore_index_excludes_pixels():
    x = random_sphere(1, 12, 3, seed=2)
    y = torch.tensor([[0, 0, 1, 1, 255, 255, 2, 2, 2, 255, 0, 1]])
    keep = y[0] != 255
    torch.testing.assert_close(
        pairwise_embedding_loss(x, y)["loss"],
        pairwise_embedding_loss(x[:, keep], y[:, keep])["loss"],
    )


def test_sampling_is_reproducible_and_respects_counts():
    x = random_sphere(1, 500, 3, seed=3)
    y = torch.randint(0, 5, (1, 500), generator=torch.Generator().manual_seed(1))
    a = pairwise_embedding_loss(x, y, sample_ratio=0.2, generator=torch.Generator().manual_seed(7))
    b = pairwise_embedding_loss(x, y, sample_ratio=0.2, generator=torch.Generator().manual_seed(7))
    c = pairwise_embedding_loss(x, y, sample_ratio=0.2, generator=torch.Generator().manual_seed(8))
    assert a["loss"] == b["loss"] and a["loss"] != c["loss"]
    full = pairwise_embedding_loss(x, y)
    assert full["loss"] == pairwise_embedding_loss(x, y)["loss"]  # deterministic without sampling


def test_hard_fraction_keeps_total_weight_and_focuses_on_hard_pairs():
    x = random_sphere(1, 40, 3, seed=4)
    y = torch.randint(0, 3, (1, 40), generator=torch.Generator().manual_seed(2))
    full = pairwise_embedding_loss(x, y, margin=0.3)
    hard = pairwise_embedding_loss(x, y, margin=0.3, hard_fraction=0.1)
    assert hard["pos"] > full["pos"] and hard["neg"] > full["neg"]
    same = pairwise_embedding_loss(x, y, margin=0.3, hard_fraction=1.0)
    torch.testing.assert_close(same["loss"], full["loss"])


def test_batch_mean_and_dtype_device(device):
    x = random_sphere(3, 20, 4, seed=5, dtype=torch.float32).to(device)
    y = torch.randint(0, 3, (3, 20)).to(device)
    out = pairwise_embedding_loss(x, y)
    per_image = [pairwise_embedding_loss(x[i : i + 1], y[i : i + 1])["loss"] for i in range(3)]
    torch.testing.assert_close(out["loss"], torch.stack(per_image).mean())
    assert out["loss"].dtype == torch.float32 and out["loss"].device.type == device.type
    assert math.isfinite(out["loss"].item())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(embeddings=torch.zeros(5, 3)), ValueError, r"\(B, N, D\)"),
        (dict(labels=torch.zeros(1, 7, dtype=torch.long)), ValueError, "labels must have shape"),
        (dict(labels=torch.zeros(1, 6)), TypeError, "integer"),
        (dict(labels=torch.full((1, 6), 255)), ValueError, "ignore_index"),
        (dict(margin=1.5), ValueError, "margin"),
        (dict(kind="hinge"), ValueError, "kind"),
        (dict(hard_fraction=0.0), ValueError, "hard_fraction"),
        (dict(sample_ratio=2.0), ValueError, "sample_ratio"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(embeddings=torch.full((1, 6, 3), float("inf"))), ValueError, "non-finite"),
    ],
)
def test_bad_input_names_the_problem(kwargs, error, match):
    args = dict(embeddings=random_sphere(1, 6, 3), labels=torch.zeros(1, 6, dtype=torch.long))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pairwise_embedding_loss(**args)


def test_rows_must_be_unit_norm():
    """Issue 14: embeddings x10 gave pos = −0.63 and neg = 7.06 without an error."""
    x = 10 * random_sphere(1, 6, 3)
    with pytest.raises(ValueError, match=r"embeddings must hold unit-norm rows.*max norm 10"):
        pairwise_embedding_loss(x, torch.zeros(1, 6, dtype=torch.long))


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(5)


def test_numpy_and_zero_dim_tensor_scalars_are_accepted():
    x = random_sphere(2, 15, 4, seed=1)
    y = torch.randint(0, 4, (2, 15), generator=torch.Generator().manual_seed(0))
    expected = pairwise_embedding_loss(
        x, y, 0.3, num_samples=10, pos_weight=2.0, hard_fraction=0.5, generator=_gen()
    )
    got = pairwise_embedding_loss(
        x,
        y,
        np.float32(0.3),
        num_samples=np.int64(10),
        generator=_gen(),
        pos_weight=torch.tensor(2.0),
        hard_fraction=np.float64(0.5),
        ignore_index=np.int64(255),
    )
    torch.testing.assert_close(got["loss"], expected["loss"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(embeddings=torch.zeros(0, 6, 3), labels=torch.zeros(0, 6, dtype=torch.long)),
            ValueError,
            r"embeddings must have B >= 1.*got shape \(0, 6, 3\)",
        ),
        (dict(generator=0), TypeError, r"generator must be a torch.Generator or None, got int"),
        (dict(max_samples=0, sample_ratio=0.5), ValueError, r"max_samples must be >= 1, got 0"),
        (dict(max_samples=2.5), TypeError, r"max_samples must be an int, got float 2\.5"),
        (dict(num_samples=2.0), TypeError, r"num_samples must be an int, got float 2\.0"),
        (dict(margin=-1), ValueError, r"margin must lie in \[0, 1\], got -1"),
        (dict(margin=float("nan")), ValueError, r"margin must lie in \[0, 1\], got nan"),
        (dict(margin="0.5"), TypeError, r"margin must be a number, got str"),
        (dict(pos_weight=float("nan")), ValueError, r"pos_weight must be finite, got nan"),
        (dict(neg_weight=-1.0), ValueError, r"neg_weight must be >= 0, got -1\.0"),
        (dict(ignore_index=1.5), TypeError, r"ignore_index must be an int or None, got float"),
        (dict(hard_fraction=1.5), ValueError, r"hard_fraction must lie in \(0, 1\], got 1\.5"),
        (dict(embeddings=10 * random_sphere(1, 6, 3)), ValueError, "unit-norm"),
    ],
)
def test_more_bad_input_names_the_argument_and_value(kwargs, error, match):
    args = dict(embeddings=random_sphere(1, 6, 3), labels=torch.zeros(1, 6, dtype=torch.long))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        pairwise_embedding_loss(**args)


_EXAMPLES = max(1, round(20 * float(os.environ.get("PIXELGROUP_HYPOTHESIS_SCALE", "1"))))


@settings(max_examples=_EXAMPLES, deadline=None, database=None)
@given(
    st.sampled_from([torch.float64, torch.float32, torch.bfloat16, torch.float16]),
    st.integers(1, 3),
    st.integers(1, 300),
    st.integers(1, 64),
    st.integers(1, 6),
    st.sampled_from(["linear", "squared", "logistic"]),
    st.sampled_from([None, 0.3, 1.0]),
    st.sampled_from([None, 0.5]),
    st.floats(0, 1),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_loss_and_gradient_are_finite_for_every_accepted_input(
    dtype, batch, n, dim, num_labels, kind, hard_fraction, sample_ratio, margin, collapsed, seed
):
    """Rows normalised in the input dtype (collapsed: many identical rows, zero rows too)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n, dim, generator=g, dtype=torch.float64)
    if collapsed:
        z = z[:, :1].expand_as(z).clone()
        z[:, ::7] = 0.0
    z = z.to(dtype).requires_grad_()
    labels = torch.randint(0, num_labels, (batch, n), generator=g)
    labels[:, ::5] = 255
    labels[:, 0] = 0  # at least one valid pixel per image
    out = pairwise_embedding_loss(
        normalize_to_sphere(z, dim=-1),
        labels,
        margin,
        kind=kind,
        hard_fraction=hard_fraction,
        sample_ratio=sample_ratio,
        generator=torch.Generator().manual_seed(seed),
    )
    assert all(bool(torch.isfinite(v)) for v in out.values())
    (grad,) = torch.autograd.grad(out["loss"], z)
    assert bool(torch.isfinite(grad).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings_are_computed_in_float32(dtype):
    """The pair weights 1 / (n_a n_b K²) underflow in float16 (13 M of 16 M were zero for 4,000
    pixels, and the loss was 0.11 instead of 0.17): half-precision input is computed in float32,
    also inside an autocast region, and gives the float32 loss of the rounded input."""
    x = normalize_to_sphere(
        torch.randn(1, 4000, 64, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    y = torch.zeros(1, 4000, dtype=torch.long)
    y[:, 3500:] = torch.randint(1, 3, (500,), generator=torch.Generator().manual_seed(1))
    rounded = x.to(dtype)
    expected = pairwise_embedding_loss(rounded.float(), y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pairwise_embedding_loss(rounded, y)
    for key in ("pos", "neg", "loss"):
        assert got[key].dtype == torch.float32
        torch.testing.assert_close(got[key], expected[key], rtol=1e-6, atol=0)
