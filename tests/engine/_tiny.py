"""A tiny instance experiment for fast engine / CLI tests."""

from pixelgroup.config import ExperimentConfig, from_dict

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
