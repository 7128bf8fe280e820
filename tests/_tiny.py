"""Tiny models and experiments for fast tests: ``TINY`` (an instance experiment on the toy
digits), :func:`tiny_config`, ``TINY_DENSE_OPTIONS`` (the smallest dense embedding network,
for the VOC-style tasks) and :func:`crash_after_first_checkpoint` (a killed run to resume)."""

from pixelgroup.config import ExperimentConfig, from_dict

TINY_DENSE_OPTIONS = {
    "backbone": "efficientnet_lite0",
    "embedding_dim": 8,
    "head_channels": 16,
    "embedding_stride": 4,
}


TINY = {
    "data": {"options": {"length": 8, "eval_length": 2, "max_digits": 3}, "batch_size": 4},
    "model": {"options": {"width": 4, "num_blocks": 1}},
    "loss": {"num_iters": 1, "stride": 4},
    "train": {"epochs": 2, "iters_per_epoch": 2},
    "grouping": {"num_iters": 2, "stride": 4, "min_area": 4},
}


def tiny_config(**sections) -> ExperimentConfig:
    values = {k: dict(v) for k, v in TINY.items()}
    for key, value in sections.items():
        values.setdefault(key, {}).update(value) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            values[key] = value
    return from_dict(ExperimentConfig, values)


def crash_after_first_checkpoint(cfg: ExperimentConfig, out, monkeypatch) -> None:
    """Train ``cfg`` into ``out`` as a run killed right after writing its first checkpoint
    (``KeyboardInterrupt`` from inside ``save_checkpoint``), for resume tests."""
    import sys

    import pytest

    from pixelgroup.engine.checkpoint import save_checkpoint
    from pixelgroup.engine.train import train

    def save_then_crash(state, path):
        save_checkpoint(state, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(sys.modules["pixelgroup.engine.train"], "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)
    monkeypatch.undo()


def group_in_blocks(monkeypatch, *, whole_above: int, block: int, margin: int) -> None:
    """Make predict and eval group images over ``whole_above`` px a side in blocks of
    ``block`` px with ``margin`` px margins (postprocess/tiles.py::plan_blocks; the defaults,
    1024, 512 and 32 px, are too large for a test's images)."""
    monkeypatch.setattr("pixelgroup.postprocess.tiles.GROUP_WHOLE_ABOVE", whole_above)
    monkeypatch.setattr("pixelgroup.postprocess.tiles.GROUP_BLOCK", block)
    monkeypatch.setattr("pixelgroup.postprocess.tiles.GROUP_MARGIN", margin)
