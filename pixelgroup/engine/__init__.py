"""The generic engine: training, inference, evaluation, prediction, checkpoints and distributed
set-up.

It runs any task of :data:`pixelgroup.tasks.TASKS` through the task protocol and never names
one.
"""

from pixelgroup.engine.checkpoint import load_checkpoint, load_model, save_checkpoint
from pixelgroup.engine.evaluate import evaluate
from pixelgroup.engine.inference import InferenceRunner
from pixelgroup.engine.predict import predict_files, predict_image
from pixelgroup.engine.train import CHECKPOINT_NAME, NonFiniteLossError, TrainResult, train

__all__ = [
    "train",
    "evaluate",
    "InferenceRunner",
    "predict_files",
    "predict_image",
    "TrainResult",
    "NonFiniteLossError",
    "CHECKPOINT_NAME",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]
