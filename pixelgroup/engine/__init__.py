"""Where model, loss, data and evaluator meet: training, evaluation, checkpoints, tasks."""

from pixelgroup.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from pixelgroup.engine.evaluate import evaluate
from pixelgroup.engine.tasks import TASKS, extract_instances, get_task
from pixelgroup.engine.train import NonFiniteLossError, TrainResult, train

__all__ = [
    "train",
    "evaluate",
    "TrainResult",
    "NonFiniteLossError",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "TASKS",
    "get_task",
    "extract_instances",
]
