"""Volumes: the 3-D spatial embedding, the losses on (B, D, Z, Y, X), grouping, TIFF stacks."""

import math

import numpy as np
import pytest
import tifffile
import torch

from pixelgroup.data.synthetic_volumes import ToyVolumes, draw_nuclei_volume
from pixelgroup.data.volumes import (
    read_label_volume,
    read_volume,
    voxel_size_of,
    write_label_volume,
)
from pixelgroup.errors import DataError, InputError
from pixelgroup.losses import RecurrentGroupingLoss, center_vote_loss
from pixelgroup.models.volume import VolumeEmbeddingNet
from pixelgroup.ops.spatial import fourier_frequencies_3d, spatial_embedding, voxel_positions
from pixelgroup.ops.sphere import normalize_to_sphere
from pixelgroup.postprocess.volumes import extract_volume_instances


def test_toy_volumes_are_seeded_per_item_and_split():
    a, b = ToyVolumes("train", 3, shape=(6, 24, 24)), ToyVolumes("train", 3, shape=(6, 24, 24))
    assert torch.equal(a[1].image, b[1].image) and torch.equal(a[1].instance, b[1].instance)
    assert not torch.equal(a[0].image, a[1].image)
    assert not torch.equal(a[0].image, ToyVolumes("test", 1, shape=(6, 24, 24))[0].image)
    s = a[2]
    assert s.image.shape == (1, 6, 24, 24) and s.instance.shape == (6, 24, 24)
    assert s.image.dtype == torch.float32 and 0 <= float(s.image.min()) <= float(s.image.max()) <= 1
    assert torch.equal(s.semantic, (s.instance > 0).long())


def test_toy_nuclei_are_physical_ellipsoids_whatever_the_spacing():
    # the same scene at half the z sampling: about half the voxels per nucleus
    fine = draw_nuclei_volume(np.random.default_rng(3), (24, 32, 32), spacing=(1, 1, 1), count=3)
    coarse = draw_nuclei_volume(np.random.default_rng(3), (12, 32, 32), spacing=(2, 1, 1), count=3)
    ratio = (coarse.instance > 0).sum() / (fine.instance > 0).sum()
    assert 0.4 < ratio < 0.6


def test_3d_fourier_kernel_is_isotropic_gaussian_in_physical_units():
    w = fourier_frequencies_3d(64, 4.0)
    for axis in range(3):
        d = torch.zeros(3, dtype=torch.float64)
        d[axis] = 4.0
        assert abs(float(torch.cos(w @ d).mean()) - math.exp(-0.5)) < 0.06, axis
    votes = torch.randn(2, 3, 2, 3, 4) * 5
    e = spatial_embedding(votes, w.float())
    assert e.shape == (2, 128, 2, 3, 4)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(2, 2, 3, 4))
    cos = (e[:, :, 0, 0, 0] * e[:, :, 1, 2, 3]).sum(1)
    ref = torch.cos((votes[:, :, 0, 0, 0] - votes[:, :, 1, 2, 3]) @ w.float().T).mean(1)
    torch.testing.assert_close(cos, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="3 channels"):
        spatial_embedding(votes[:, :2], w.float())
    assert voxel_positions(torch.zeros(3, 1, 2), (2.0, 1.0, 0.5))[:, 2, 0, 1].tolist() == [
        4.0,
        0.0,
        0.5,
    ]


def _tiny_volume_case(dtype=torch.float64):
    gen = torch.Generator().manual_seed(0)
    emb = normalize_to_sphere(torch.randn(1, 4, 2, 3, 3, generator=gen, dtype=dtype), dim=1)
    labels = torch.tensor([[[[1, 1, 2], [1, 2, 2], [0, 0, 2]], [[1, 1, 2], [3, 3, 2], [3, 3, 0]]]])
    return emb.requires_grad_(), labels


def test_recurrent_loss_on_a_volume_equals_the_loss_on_its_voxels_as_an_image():
    emb, labels = _tiny_volume_case()
    loss = RecurrentGroupingLoss(bandwidth=0.5, num_iters=2, sample_ratio=None, ignore_index=None)
    volume = loss(emb, labels, torch.Generator().manual_seed(1))
    image = loss(emb.reshape(1, 4, 6, 3), labels.reshape(1, 6, 3), torch.Generator().manual_seed(1))
    for key, value in volume.items():
        torch.testing.assert_close(value, image[key], rtol=0, atol=0)
    with pytest.raises(InputError, match=r"\(B, Z, Y, X\)"):
        loss(emb, labels[0])


def test_recurrent_loss_gradcheck_on_a_tiny_volume():
    emb, labels = _tiny_volume_case()
    loss = RecurrentGroupingLoss(bandwidth=0.5, num_iters=2, sample_ratio=None, ignore_index=0)

    def f(x):
        return loss(normalize_to_sphere(x, dim=1), labels)["loss"]

    assert torch.autograd.gradcheck(f, (emb.detach().clone().requires_grad_(),))
    # the loops on 1 x 2 x 2-pooled voxels: shapes and a finite gradient
    pooled = RecurrentGroupingLoss(bandwidth=0.5, num_iters=1, sample_ratio=None, loop_stride=2)
    pooled(emb, labels)["loss"].backward()
    assert torch.isfinite(emb.grad).all()


def test_center_vote_loss_on_a_volume_uses_physical_centroids():
    labels = torch.zeros(1, 2, 2, 4, dtype=torch.long)
    labels[0, :, :, :2] = 1
    labels[0, 0, :, 2:] = 2
    spacing = (3.0, 1.0, 1.0)
    votes = torch.zeros(1, 3, 2, 2, 4, dtype=torch.float64)
    votes[0, :, :, :, :2] = torch.tensor([1.5, 0.5, 0.5], dtype=torch.float64)[:, None, None, None]
    votes[0, :, 0, :, 2:] = torch.tensor([0.0, 0.5, 2.5], dtype=torch.float64)[:, None, None]
    assert float(center_vote_loss(votes, labels, 1.0, spacing=spacing)) < 1e-5
    # slow reference: per instance, the mean distance of its voxels' votes to its centroid
    votes = votes + torch.randn(votes.shape, generator=torch.Generator().manual_seed(0)).double()
    pos = voxel_positions(labels[0], spacing, torch.float64)
    ref = []
    for k in (1, 2):
        mask = labels[0] == k
        centre = pos[:, mask].mean(1)
        ref.append((votes[0][:, mask] - centre[:, None]).norm(dim=0).mean() / 2.0)
    got = center_vote_loss(votes, labels, 2.0, spacing=spacing)
    torch.testing.assert_close(got, torch.stack(ref).mean())
    x = votes.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: center_vote_loss(v, labels, 2.0, spacing=spacing), x)
    with pytest.raises(ValueError, match="resolution"):
        center_vote_loss(votes[..., :2], labels, 1.0)


def _two_blobs():
    emb = torch.zeros(3, 4, 12, 12)
    emb[0] = 1.0  # background direction
    emb[:, 1:3, 2:6, 2:6] = torch.tensor([0.0, 1.0, 0.0])[:, None, None, None]
    emb[:, 1:4, 7:11, 6:10] = torch.tensor([0.0, 0.0, 1.0])[:, None, None, None]
    return emb


@pytest.mark.parametrize("stride", [1, 2])
def test_volume_instances_with_and_without_a_foreground_map(stride):
    emb = _two_blobs()
    labels, scores = extract_volume_instances(emb, num_iters=2, min_area=4, stride=stride)
    assert labels.shape == (4, 12, 12) and len(scores) == 2
    assert len(torch.unique(labels[1:3, 2:6, 2:6])) == 1 and labels[1, 3, 3] > 0
    assert labels[2, 8, 8] > 0 and labels[2, 8, 8] != labels[1, 3, 3] and labels[0, 0, 0] == 0
    fg = (emb[0] < 0.5).float()
    with_fg, _ = extract_volume_instances(
        emb, num_iters=2, min_area=4, stride=stride, foreground=fg
    )
    assert torch.equal(with_fg > 0, fg > 0)
    with pytest.raises(InputError, match=r"\(Z, Y, X\)"):
        extract_volume_instances(emb, foreground=fg[0])


def test_split_components_and_min_area_count_voxels_in_3d():
    emb = _two_blobs()
    emb[:, 1:4, 7:11, 6:10] = torch.tensor([0.0, 1.0, 0.0])[:, None, None, None]  # one group
    emb[:, 3, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # a 1-voxel speck of it
    fg = (emb[0] < 0.5).float()
    merged, _ = extract_volume_instances(emb, num_iters=0, min_area=2, foreground=fg)
    assert int(merged.max()) == 1
    split, scores = extract_volume_instances(
        emb, num_iters=0, min_area=2, foreground=fg, split_components=True
    )
    assert int(split.max()) == 2 and len(scores) == 2 and split[3, 0, 0] == 0


def test_volume_model_shapes_and_refuses_images():
    model = VolumeEmbeddingNet(width=4, num_blocks=2, embedding_dim=8, voxel_size=(2, 1, 1))
    out = model(torch.rand(2, 1, 5, 12, 10))
    assert out.embedding.shape == (2, 8, 5, 12, 10) and out.votes.shape == (2, 3, 5, 12, 10)
    assert out.semantic.shape == (2, 2, 5, 12, 10)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2, 5, 12, 10))
    # initial offsets ~0: every voxel votes for itself, in physical units (z times 2)
    assert float((out.votes[0, 0, 3] - 6.0).abs().max().detach()) < 0.1
    with pytest.raises(InputError, match="takes volumes"):
        model(torch.rand(1, 1, 12, 10))
    with pytest.raises(ValueError, match="voxel_size"):
        VolumeEmbeddingNet(voxel_size=(1, 1))


def test_label_stacks_round_trip_with_voxel_size(tmp_path):
    labels = torch.zeros(3, 5, 6, dtype=torch.long)
    labels[1, 1:3, 2:5] = 7
    path = write_label_volume(labels, tmp_path / "a.tif", voxel_size=(2.5, 0.5, 0.5))
    assert torch.equal(read_label_volume(path), labels)
    assert tifffile.imread(path).dtype == np.uint16
    size = voxel_size_of(path)
    assert size is not None and np.allclose(size, (2.5, 0.5, 0.5))
    labels[0, 0, 0] = 70000
    assert tifffile.imread(write_label_volume(labels, tmp_path / "b.tif")).dtype == np.uint32
    assert voxel_size_of(tmp_path / "b.tif") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]  # no temp files


def test_read_volume_layouts_and_bad_files(tmp_path):
    stack = np.random.default_rng(0).integers(0, 4000, (4, 2, 8, 9)).astype(np.uint16)  # ZCYX
    tifffile.imwrite(tmp_path / "zc.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    volume = read_volume(tmp_path / "zc.tif", channels=2)
    assert volume.shape == (2, 4, 8, 9) and float(volume.max()) == 1.0
    assert read_volume(tmp_path / "zc.tif", 1, select=[1]).shape == (1, 4, 8, 9)
    tifffile.imwrite(tmp_path / "plane.tif", stack[0, 0])
    with pytest.raises(DataError, match="a 2-D image is not a volume"):
        read_volume(tmp_path / "plane.tif")
    with pytest.raises(DataError, match="channel"):
        read_volume(tmp_path / "zc.tif", 1, select=[2])
    tifffile.imwrite(tmp_path / "i.tif", stack[:3, 0], photometric="rgb")  # 3 samples: still Z
    assert read_label_volume(tmp_path / "i.tif").shape == (3, 8, 9)
    tifffile.imwrite(tmp_path / "f.tif", stack[:, 0].astype(np.float32), photometric="minisblack")
    with pytest.raises(DataError, match="integer ids"):
        read_label_volume(tmp_path / "f.tif")


def test_orthogonal_slices_png_and_shape_errors(tmp_path):
    from pixelgroup.viz.volumes import orthogonal_slices

    image = np.random.default_rng(0).random((4, 10, 12))
    labels = np.zeros((4, 10, 12), np.int64)
    labels[1:3, 2:6, 3:8] = 1
    path = orthogonal_slices(image, [labels, labels], tmp_path / "s.png", titles=("a", "b"))
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="one shape"):
        orthogonal_slices(image, labels[:2], tmp_path / "t.png")


def test_reading_a_stack_of_another_anisotropy_warns(tmp_path, caplog):
    from pixelgroup.config import ExperimentConfig, from_dict
    from pixelgroup.tasks.volume import VolumeTask

    cfg = from_dict(
        ExperimentConfig, {"task": "volume", "model": {"options": {"voxel_size": [2, 1, 1]}}}
    )
    stack = np.arange(4 * 6 * 6, dtype=np.uint16).reshape(4, 6, 6)
    for name, spacing in (("same.tif", 2.0), ("other.tif", 4.0)):
        tifffile.imwrite(
            tmp_path / name,
            stack,
            imagej=True,
            resolution=(1.0, 1.0),
            metadata={"axes": "ZYX", "spacing": spacing},
        )
    with caplog.at_level("WARNING"):
        assert VolumeTask().read_image(cfg, tmp_path / "same.tif").shape == (1, 4, 6, 6)
        assert not caplog.records
        VolumeTask().read_image(cfg, tmp_path / "other.tif")
    assert "z/y 4.00" in caplog.text and "stretched" in caplog.text
