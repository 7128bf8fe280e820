"""Partial labels in the data: the toy's ``annotated_fraction`` and the folder's 65535."""

import numpy as np
import pytest
import torch
from PIL import Image

from pixelgroup.data import IGNORE_LABEL, ImageMaskFolder, ToyDigits, build_dataset
from pixelgroup.data.io import write_png
from pixelgroup.data.partial import UNANNOTATED, PartialAnnotation
from pixelgroup.errors import ConfigError


def test_half_of_the_toy_instances_become_unannotated():
    full = ToyDigits("train", 20)
    half = build_dataset("toy", None, "train", {"length": 20, "annotated_fraction": 0.5})
    for i in range(20):
        a, b = full[i], half[i]
        ids = [int(k) for k in a.instance.unique() if k > 0]
        kept = [int(k) for k in b.instance.unique() if k > 0]
        assert len(kept) == round(0.5 * len(ids)) and set(kept) <= set(ids)
        hidden = b.instance == IGNORE_LABEL
        assert bool((a.instance[hidden] > 0).all())  # only instance pixels, never background
        assert torch.equal(b.semantic == IGNORE_LABEL, hidden)
        assert torch.equal(a.instance[~hidden], b.instance[~hidden])
        assert torch.equal(b.instance, half[i].instance)  # the same on every read
    eval_split = build_dataset("toy", None, "val", {"eval_length": 3, "annotated_fraction": 0.5})
    assert not bool((eval_split[0].instance == IGNORE_LABEL).any())  # scores see every instance


def test_fraction_outside_the_unit_interval_is_refused():
    with pytest.raises(ConfigError, match="annotated_fraction must be >= 0 and <= 1"):
        build_dataset("toy", None, "train", {"annotated_fraction": 1.5})
    with pytest.raises(ValueError, match="fraction must lie in"):
        PartialAnnotation(ToyDigits("train", 2), -0.1)


def test_folder_mask_value_65535_is_unannotated(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / "train" / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "train/images/a.png")
    mask = np.zeros((4, 5), np.uint16)
    mask[0, :2], mask[2:, 3:] = 1, UNANNOTATED
    write_png(mask, tmp_path / "train" / "masks" / "a.png")
    sample = ImageMaskFolder(tmp_path, "train")[0]
    expected = torch.from_numpy(mask.astype(np.int64))
    expected[2:, 3:] = IGNORE_LABEL
    assert torch.equal(sample.instance, expected)
    assert sample.semantic.tolist()[0] == [1, 1, 0, 0, 0]
    assert bool((sample.semantic[2:, 3:] == IGNORE_LABEL).all())
