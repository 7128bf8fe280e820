import math

import pytest
import torch

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
