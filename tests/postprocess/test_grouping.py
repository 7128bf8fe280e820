import math
import os

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score

import pixelgroup.postprocess.grouping as grouping_module
from pixelgroup.ops import normalize_to_sphere
from pixelgroup.postprocess import InstanceGrouping, group_pixels
from tests._reference import clustered_sphere, random_sphere


def _planted(num_clusters=4, per_cluster=48, dim=8, spread=0.02, seed=0, h=12):
    """A ``(D, h, K*n/h)`` embedding of shuffled planted clusters and its ``(h, w)`` labels."""
    pts, labels = clustered_sphere(num_clusters, per_cluster, dim, spread, seed=seed)
    perm = torch.randperm(labels.shape[1], generator=torch.Generator().manual_seed(seed))
    pts, labels = pts[0, perm], labels[0, perm]
    w = labels.numel() // h
    return pts.T.reshape(dim, h, w).float(), labels.reshape(h, w)


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = torch.unique(torch.stack([a.flatten(), b.flatten()]), dim=1)
    return pairs.shape[1] == len(a.unique()) == len(b.unique())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_planted_clusters_exactly(seed):
    emb, truth = _planted(seed=seed)
    out = group_pixels(emb, bandwidth=0.1, num_iters=10)
    assert isinstance(out, InstanceGrouping)
    assert _same_partition(out.labels, truth)
    assert out.background is None and 1 <= out.num_iters <= 10


def test_output_contract(device):
    emb, _ = _planted(num_clusters=3, per_cluster=40, seed=3, h=8)
    out = group_pixels(emb.to(device), bandwidth=0.1)
    k = int(out.labels.max()) + 1
    assert out.labels.shape == (8, 15) and out.labels.dtype == torch.int64
    assert out.labels.device.type == device.type
    assert out.scores.shape == (k,) and bool(((out.scores >= 0) & (out.scores <= 1)).all())
    assert out.scores.min() > 0.99  # tight planted clusters are compact
    assert out.centers.shape == (k, 8) and out.centers.dtype == emb.dtype
    torch.testing.assert_close(out.centers.norm(dim=1).cpu(), torch.ones(k))
    assert out.areas.tolist() == torch.bincount(out.labels.flatten()).tolist()
    assert out.areas.tolist() == sorted(out.areas.tolist(), reverse=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes_give_the_same_grouping(dtype):
    emb, truth = _planted(seed=4)
    out = group_pixels(emb.to(dtype), bandwidth=0.1)
    assert _same_partition(out.labels, truth) and out.centers.dtype == dtype


def test_permuting_pixels_permutes_labels():
    emb, _ = _planted(seed=5)
    flat = emb.flatten(1)
    perm = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(0))
    a = group_pixels(emb).labels.flatten()
    b = group_pixels(flat[:, perm].reshape(emb.shape)).labels.flatten()
    assert _same_partition(a[perm], b)


def test_tiny_group_joins_nearest_kept_group():
    eye = torch.eye(4)
    tiny = 0.8 * eye[0] + 0.6 * eye[2]  # cosine 0.8 to group 0, 0 to group 1: far from both
    emb = torch.cat([eye[0].expand(60, 4), eye[1].expand(60, 4), tiny.expand(3, 4)])
    emb = emb.T.reshape(4, 3, 41)
    kept = group_pixels(emb, bandwidth=0.1, min_area=1).labels.flatten()
    assert len(kept.unique()) == 3 and bool((kept[120:] == kept[120]).all())
    merged = group_pixels(emb, bandwidth=0.1, min_area=4).labels.flatten()
    assert len(merged.unique()) == 2 and bool((merged[120:] == merged[0]).all())


def test_semantic_mask_makes_background_label_zero():
    emb, truth = _planted(seed=7)
    fg = truth != 0
    out = group_pixels(emb, semantic_mask=fg)
    assert out.background == 0 and bool((out.labels[~fg] == 0).all())
    assert bool((out.labels[fg] > 0).all()) and _same_partition(out.labels, truth)
    assert group_pixels(emb, semantic_mask=torch.zeros_like(fg)).labels.max() == 0
    all_fg = group_pixels(emb, semantic_mask=torch.ones_like(fg))
    assert all_fg.background is None and _same_partition(all_fg.labels, truth)


def test_single_pixel_and_no_loops():
    out = group_pixels(random_sphere(1, 3, seed=0).T[:, :, None].float(), min_area=1)
    assert out.labels.tolist() == [[0]] and out.num_iters == 1  # converged at once
    emb, truth = _planted(seed=8, spread=0.005)
    out = group_pixels(emb, num_iters=0)
    assert out.num_iters == 0 and _same_partition(out.labels, truth)


def _original_toy(shared_data) -> tuple[torch.Tensor, np.ndarray]:
    """The original's stored toy model (δ = 0.2): ``(30, 3, 64, 64)`` loop-1 embeddings and
    ``(64, 64, 30)`` instance masks (background 0)."""
    mat = scipy.io.loadmat(shared_data / "toy-gbms" / "loops_bandwidth0.2.mat", squeeze_me=True)
    emb = np.asarray(mat["predInstanceMaskMat"][0], dtype=np.float32)  # (64, 64, 3, 30)
    return torch.from_numpy(emb).permute(3, 2, 0, 1), mat["instanceMaskMat"]


def test_trained_toy_embeddings_match_ground_truth(shared_data):
    """The original's stored toy model (δ = 0.2): its loop-1 embeddings of 12 test images."""
    embeddings, truth = _original_toy(shared_data)
    scores = []
    for i in range(12):
        out = group_pixels(embeddings[i], bandwidth=0.2, num_iters=10)
        scores.append(adjusted_rand_score(truth[..., i].ravel(), out.labels.ravel().numpy()))
    assert np.mean(scores) > 0.95 and np.min(scores) > 0.88


@pytest.mark.parametrize("max_points", [16, 64])
def test_sampled_grouping_recovers_planted_clusters(max_points):
    """Shifting a 16- or 64-pixel sample and letting the rest vote finds the same partition."""
    emb, truth = _planted(num_clusters=5, per_cluster=60, seed=6)
    sampled = group_pixels(emb, bandwidth=0.1, max_points=max_points, min_area=4)
    assert _same_partition(sampled.labels, truth)
    assert sampled.areas.sum() == truth.numel()


def test_vote_is_the_kernel_mass_argmax():
    """Naive reference: each point takes the group with the largest weighted kernel sum."""
    x = random_sphere(300, 5, seed=7).float()
    sample = x[::4]
    g = torch.Generator().manual_seed(0)
    group = torch.randint(0, 6, (len(sample),), generator=g)
    weights = torch.randint(1, 5, (len(sample),), generator=g).float()
    kernel = torch.exp((x @ sample.T - 1) / 0.3**2) * weights
    mass = kernel @ torch.nn.functional.one_hot(group).float()
    got, covered = grouping_module._vote(x, sample, weights, group, 0.3, cover=0.9)
    top2 = mass.topk(2, dim=1).values
    clear = top2[:, 0] > top2[:, 1] * (1 + 1e-4)  # skip near-ties (rounding may flip them)
    assert clear.float().mean() > 0.9
    assert torch.equal(got[clear], mass.argmax(1)[clear])
    assert torch.equal(covered, (x @ sample.T).amax(dim=1) >= 0.9)


def _naive_vote(x, sample, weights, group, bandwidth, cover):
    """Slow reference: the full ``(N, S)`` kernel, summed per group through a one-hot matrix;
    returns the group masses ``(N, K)`` and the covered flags ``(N,)``."""
    kernel = torch.exp((x.double() @ sample.double().T - 1) / bandwidth**2) * weights.double()
    mass = kernel @ torch.nn.functional.one_hot(group).double()
    return mass, (x.double() @ sample.double().T).amax(dim=1) >= cover


def _check_vote(x, sample, weights, group, bandwidth, cover, every):
    """``_vote`` against the naive reference: covered flags away from the cover cosine, and
    the winner of every point it must decide (all with ``every``, else the covered ones),
    near-ties skipped. Returns the fraction of points the check saw."""
    got, covered = grouping_module._vote(x, sample, weights, group, bandwidth, cover, every=every)
    mass, naive_covered = _naive_vote(x, sample, weights, group, bandwidth, cover)
    best = (x.double() @ sample.double().T).amax(dim=1)
    clear_cover = (best - cover).abs() > 1e-5
    assert torch.equal(covered[clear_cover], naive_covered[clear_cover])
    top2 = mass.topk(min(2, mass.shape[1]), dim=1).values
    clear = top2[:, 0] > top2[:, -1] * (1 + 1e-4) if mass.shape[1] > 1 else top2[:, 0] > 0
    need = clear if every else clear & naive_covered & clear_cover
    assert torch.equal(got[need], mass.argmax(1)[need])
    return float(need.float().mean())


@pytest.mark.parametrize("every", [True, False])
def test_pruned_vote_on_a_crowd_matches_the_kernel_sums(every):
    """The vote that skips the kernel sums where cap bounds decide (a crowd: one sampled
    background, many small objects) gives the naive kernel-mass argmax."""
    emb, truth = _crowd(64, 96, seed=3)
    x = emb.flatten(1).T.contiguous()
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:512]
    sample, group = x[pick], torch.unique(truth.flatten()[pick], return_inverse=True)[1]
    weights = torch.ones(len(sample))
    seen = _check_vote(x, sample, weights, group, 0.1, 1 - 2 * 0.1**2, every)
    assert seen > 0.9 if every else seen > 0.5


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    clusters=st.integers(1, 12),
    spread=st.sampled_from([0.01, 0.05, 0.2]),
    bandwidth=st.sampled_from([0.05, 0.1, 0.3]),
    dim=st.sampled_from([3, 8, 32]),
    every=st.booleans(),
)
def test_pruned_vote_matches_the_kernel_sums(seed, clusters, spread, bandwidth, dim, every):
    """Property: on clustered points with any weights and groups (a cluster may be split
    between groups, a group may span clusters), the pruned vote equals the naive vote."""
    pts, labels = clustered_sphere(clusters, 60, dim, spread, seed=seed, dtype=torch.float32)
    x, labels = pts[0], labels[0]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x), generator=g)[: max(8, len(x) // 3)]
    group = labels[pick] % max(1, clusters - 1)
    split = torch.rand(len(pick), generator=g) < 0.1  # some points in another group
    group = torch.where(split, torch.randint(0, clusters, (len(pick),), generator=g), group)
    group = torch.unique(group, return_inverse=True)[1]
    weights = torch.randint(1, 6, (len(pick),), generator=g).float()
    _check_vote(x, x[pick], weights, group, bandwidth, 1 - 2 * bandwidth**2, every)


def _crowd(count: int, size: int, dim: int = 32, noise: float = 0.02, seed: int = 0):
    """``(D, size, size)`` embedding of ``count`` separated 6 x 6 objects on one background
    (random unit centres, pixel = normalize(centre + noise·n)) and its labels: the scene of
    benchmarks/crowd_grouping.py at a small size."""
    g = torch.Generator().manual_seed(seed)
    per_row = math.isqrt(count - 1) + 1
    cell = size // per_row
    labels = torch.zeros(size, size, dtype=torch.int64)
    for k in range(count):
        y, x = (k // per_row) * cell + 1, (k % per_row) * cell + 1
        labels[y : y + 6, x : x + 6] = k + 1
    centers = normalize_to_sphere(torch.randn(count + 1, dim, generator=g), dim=1)
    points = centers[labels.flatten()] + noise * torch.randn(size * size, dim, generator=g)
    return normalize_to_sphere(points, dim=1).T.reshape(dim, size, size), labels


@pytest.mark.parametrize("seed", [0, 1])
def test_crowd_of_small_objects_is_recovered_exactly(seed):
    """Issue 29: 64 separated 6 x 6 objects in 96 x 96 (D = 32), a 256-pixel sample (~4 % of
    the pixels: most objects get no sampled pixel). Sample-then-vote merged the unsampled
    objects into sampled groups; rounds over the uncovered pixels find every object."""
    emb, truth = _crowd(64, 96, seed=seed)
    out = group_pixels(emb, bandwidth=0.1, max_points=256)
    assert _same_partition(out.labels, truth)
    assert len(out.areas) == 65


def test_the_sample_depends_on_pixel_positions_not_on_the_count_of_points():
    """Merging two points (a small change of the embedding) changes the sample by at most the
    merged point: every other point keeps its priority (a sample drawn among the distinct
    points by their count would change wholesale)."""
    emb = random_sphere(4, 32 * 32, seed=3).T.reshape(4, 32, 32)
    flat = emb.flatten(1).T
    moved = flat.clone()
    moved[700] = moved[5]  # pixel 700 now coincides with pixel 5

    def sampled(points):
        distinct, _, index = grouping_module.merge_coincident(points, points.new_ones(1024), 0.0)
        priority = grouping_module._pixel_priority(1024, torch.arange(1024), index)
        chosen = grouping_module._sample(torch.arange(len(distinct)), priority, 100)
        first = torch.full((len(distinct),), 1024).scatter_reduce_(
            0, index, torch.arange(1024), "amin"
        )
        return set(first[chosen].tolist()), len(distinct)

    before, m_before = sampled(flat)
    after, m_after = sampled(moved)
    assert (m_before, m_after) == (1024, 1023)
    assert len(before ^ after) <= 2 and len(after) == 100


def test_an_object_two_rounds_sample_stays_one_group():
    """A round's seed joins the earlier group whose mean lies within cos 1 − 2δ² of it."""
    sums = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    seeds = normalize_to_sphere(torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    ids = grouping_module._join_groups(seeds, sums, cover=1 - 2 * 0.1**2)
    assert ids.tolist() == [0, 2]  # the first joins group 0, the second is new


def test_sampling_keeps_the_toy_grouping(shared_data):
    """On the original's toy embeddings a 512-pixel sample (of 4096) changes the mean ARI by
    less than 0.01."""
    embeddings, truth = _original_toy(shared_data)
    diffs = []
    for i in range(6):
        aris = [
            adjusted_rand_score(
                truth[..., i].ravel(),
                group_pixels(embeddings[i], bandwidth=0.2, max_points=m).labels.ravel().numpy(),
            )
            for m in (None, 512)
        ]
        diffs.append(aris[1] - aris[0])
    assert abs(np.mean(diffs)) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embedding": [[1.0]]}, TypeError, "torch.Tensor"),
        ({"embedding": torch.ones(3, 4)}, ValueError, r"\(D, H, W\)"),
        ({"embedding": torch.ones(3, 2, 2, dtype=torch.long)}, TypeError, "floating"),
        ({"embedding": torch.ones(3, 0, 2)}, ValueError, "H, W >= 1"),
        ({"embedding": torch.full((3, 2, 2), float("nan"))}, ValueError, "non-finite"),
        ({"embedding": 2 * torch.ones(3, 2, 2)}, ValueError, "unit-norm"),
        ({"bandwidth": 0.0}, ValueError, "bandwidth"),
        ({"num_iters": -1}, ValueError, "num_iters"),
        ({"min_area": 1.5}, TypeError, "min_area"),
        ({"threshold": 1.5}, ValueError, "threshold"),
        ({"max_points": 0}, ValueError, "max_points"),
        ({"max_points": 2.0}, TypeError, "max_points"),
        ({"semantic_mask": torch.ones(2, 2)}, TypeError, "bool"),
        ({"semantic_mask": torch.ones(3, 2, dtype=torch.bool)}, ValueError, r"\(H, W\)"),
    ],
)
def test_bad_input_names_the_problem(kwargs, error, match):
    args = {"embedding": torch.eye(3)[:, :, None].expand(3, 3, 2).reshape(3, 2, 3)} | kwargs
    embedding = args.pop("embedding")
    with pytest.raises(error, match=match):
        group_pixels(embedding, **args)


@pytest.mark.parametrize("bandwidth", [1.5, 2.0, 4.0])
def test_bandwidth_beyond_sqrt_two_is_one_group(bandwidth):
    """Issue 14: the default threshold 1 − δ² fell below −1 for δ >= √2 and the call failed
    with "threshold … got None"; the kernel is then wider than the sphere: one group."""
    emb, _ = _planted(seed=3)
    out = group_pixels(emb, bandwidth=bandwidth)
    assert out.labels.max() == 0 and out.areas.tolist() == [emb.shape[1] * emb.shape[2]]


def test_numpy_and_zero_dim_tensor_settings_are_accepted():
    emb, truth = _planted(seed=2)
    expected = group_pixels(emb, bandwidth=0.1, num_iters=8, min_area=4, max_points=64)
    got = group_pixels(
        emb,
        bandwidth=np.float32(0.1),
        num_iters=np.int64(8),
        min_area=torch.tensor(4),
        max_points=np.int32(64),
        threshold=None,
        merge_tol=np.float64(1e-3),
    )
    assert torch.equal(got.labels, expected.labels) and got.num_iters == expected.num_iters


@pytest.mark.parametrize("bandwidth", [1e-5, 1e-4, 3e-3])
def test_small_bandwidth_groups_are_a_valid_partition(bandwidth):
    """Each point is its own mode at a tiny δ: every distinct pixel is a group (before the
    tiny-group merge), and nothing is NaN."""
    emb, _ = _planted(seed=1, spread=0.05)
    out = group_pixels(emb, bandwidth=bandwidth, min_area=1, max_points=None)
    _assert_valid_grouping(out, emb)


def _assert_valid_grouping(out: InstanceGrouping, emb: torch.Tensor) -> None:
    d, h, w = emb.shape
    k = int(out.labels.max()) + 1
    assert out.labels.shape == (h, w) and out.labels.dtype == torch.int64
    assert int(out.labels.min()) == 0
    assert out.areas.tolist() == torch.bincount(out.labels.flatten(), minlength=k).tolist()
    assert bool((out.areas > 0).all()) and int(out.areas.sum()) == h * w
    assert out.scores.shape == (k,) and bool(torch.isfinite(out.scores).all())
    assert bool(((out.scores >= 0) & (out.scores <= 1)).all())
    assert out.centers.shape == (k, d) and bool(torch.isfinite(out.centers).all())


_EXAMPLES = max(1, round(12 * float(os.environ.get("PIXELGROUP_HYPOTHESIS_SCALE", "1"))))


@settings(max_examples=_EXAMPLES, deadline=None, database=None)
# δ = √10 > √2 (the default threshold used to leave [-1, 1]); bfloat16 rows longer than 1
@example(torch.float64, 1, 1, 1, 0, 0.5, None, 1, False, 0)
@example(torch.bfloat16, 1, 1, 3, 0, 0.0, None, 1, False, 0)
@given(
    st.sampled_from([torch.float64, torch.float32, torch.bfloat16, torch.float16]),
    st.integers(1, 40),
    st.integers(1, 50),
    st.integers(1, 64),
    st.sampled_from([0, 1, 3]),
    st.floats(-5, math.log10(4)),
    st.sampled_from([None, 64]),
    st.integers(1, 20),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_every_accepted_embedding_gives_a_valid_partition(
    dtype, h, w, dim, clusters, log_bandwidth, max_points, min_area, masked, seed
):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(dim, h * w, generator=g, dtype=torch.float64)
    if clusters:
        centers = torch.randn(dim, clusters, generator=g, dtype=torch.float64)
        z = centers[:, torch.randint(0, clusters, (h * w,), generator=g)] + 0.05 * z
    emb = normalize_to_sphere(z.to(dtype), dim=0).reshape(dim, h, w)
    mask = torch.rand(h, w, generator=g) < 0.7 if masked else None
    out = group_pixels(
        emb,
        bandwidth=10**log_bandwidth,
        num_iters=5,
        min_area=min_area,
        max_points=max_points,
        semantic_mask=mask,
    )
    _assert_valid_grouping(out, emb)
    assert 0 <= out.num_iters <= 5


def _two_groups_and_strays(seed: int = 0):
    """``(3, 60, 60)`` embedding: group A (rows 0-19) around e_x, group B around e_y (noise
    0.01, every pixel distinct) and 3 stray pixels 0.5-0.6 rad from e_x towards e_z."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.ones(60, 60, dtype=torch.int64)
    truth[:20] = 0
    centres = torch.eye(3)[truth.flatten()]
    x = normalize_to_sphere(centres + 0.01 * torch.randn(3600, 3, generator=g), dim=1)
    strays = torch.tensor([3599, 3598, 3597])
    angles = torch.tensor([0.5, 0.55, 0.6])
    x[strays] = torch.stack([angles.cos(), torch.zeros(3), angles.sin()], dim=1)
    return x.T.reshape(3, 60, 60), truth, strays


def test_a_few_stray_pixels_join_the_nearest_group_without_a_round_of_their_own(monkeypatch):
    """Fewer uncovered pixels than min_area could only make a group that is dropped: they
    join the group of the nearest mean at once instead of costing a round of GBMS loops."""
    emb, truth, strays = _two_groups_and_strays()
    calls = []
    shift = grouping_module.merged_mean_shift

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return shift(*args, **kwargs)

    monkeypatch.setattr(grouping_module, "merged_mean_shift", counted)
    kept = group_pixels(emb, bandwidth=0.1, max_points=256, min_area=0)
    assert len(calls) == 2 and calls[1] == 3  # the strays, uncovered, got a round
    assert len(kept.areas) == 3 and len(set(kept.labels.flatten()[strays].tolist())) == 1
    calls.clear()
    out = group_pixels(emb, bandwidth=0.1, max_points=256, min_area=16)
    assert len(calls) == 1
    truth.view(-1)[strays] = 0  # the strays (pixels of B's rows) join A, the nearest mean
    assert _same_partition(out.labels, truth)


def test_small_groups_join_the_nearest_mean_not_the_largest_group():
    """A dropped group goes to the kept group nearest in cosine, however large the others:
    5 pixels at cos 0.9 to a 20-pixel group and 0.1 to a 3,575-pixel one join the small one."""
    x = torch.zeros(3600, 3)
    x[:, 1] = 1.0  # the large group, e_y
    x[:20] = torch.tensor([1.0, 0.0, 0.0])  # the small kept group, e_x
    near = torch.tensor([0.9, 0.1, math.sqrt(1 - 0.81 - 0.01)])
    x[20:25] = near
    emb = x.T.reshape(3, 60, 60)
    out = group_pixels(emb, bandwidth=0.1, min_area=16)
    labels = out.labels.flatten()
    assert len(out.areas) == 2
    assert bool((labels[20:25] == labels[0]).all()) and int(labels[0]) != int(labels[-1])
