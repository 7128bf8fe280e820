import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelgroup.losses import center_vote_loss


def _reference(votes: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """By loops: each (image, instance)'s centroid, its pixels' mean distance, the mean."""
    per_instance = []
    for v, lab in zip(votes, labels, strict=True):
        for k in sorted(set(lab.flatten().tolist()) - {0, -1}):
            ys, xs = torch.nonzero(lab == k, as_tuple=True)
            c = torch.stack([ys.to(v.dtype).mean(), xs.to(v.dtype).mean()])
            d = [torch.linalg.norm(v[:, y, x] - c) for y, x in zip(ys, xs, strict=True)]
            per_instance.append(torch.stack(d).mean() / scale)
    return torch.stack(per_instance).mean()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), ids=st.integers(1, 5))
def test_center_vote_loss_matches_the_loops(seed, b, ids):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(-1, ids + 1, (b, 5, 6), generator=g)
    labels[0, 0, 0] = 1  # at least one instance
    votes = torch.randn(b, 2, 5, 6, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(
        center_vote_loss(votes, labels, 2.5, ignore_index=-1), _reference(votes, labels, 2.5)
    )


def test_center_vote_loss_gradcheck_and_dtype(device):
    labels = torch.zeros(2, 4, 5, dtype=torch.long, device=device)
    labels[0, 1:3, 1:4] = 2
    labels[1, 3, :] = 7
    votes = torch.randn(2, 2, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: center_vote_loss(v, labels, 2.0), (votes,))
    out = center_vote_loss(votes.float(), labels, 2.0)
    assert out.shape == () and out.dtype == torch.float32 and out.device == votes.device


def test_votes_at_the_centroid_cost_nothing_and_no_object_costs_zero():
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[0, 1:4, 2:5] = 3
    votes = torch.zeros(1, 2, 6, 6, requires_grad=True)
    with torch.no_grad():
        votes[0, 0], votes[0, 1] = 2.0, 3.0  # the centroid (y 2, x 3)
    assert float(center_vote_loss(votes, labels, 1.0).detach()) < 1e-5
    empty = center_vote_loss(votes, torch.zeros(1, 6, 6, dtype=torch.long), 1.0)
    empty.backward()
    assert float(empty.detach()) == 0.0 and votes.grad is not None


def test_coarse_votes_are_scored_against_full_resolution_centroids():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 1  # centroid (0.5, 0.5): the centre of the stride-2 cell (0, 0)
    votes = torch.zeros(1, 2, 2, 2)
    votes[0, :, 0, 0] = 0.5
    assert float(center_vote_loss(votes, labels, 1.0)) < 1e-5
