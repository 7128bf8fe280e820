"""The tasks: one module per problem, where its data, model, loss, evaluator and prediction
files meet (see :mod:`pixelgroup.tasks.base` for the protocol).

``TASKS`` maps ``ExperimentConfig.task`` to a task object; :func:`get_task` looks one up. Add a
task by writing a module with a class that follows :class:`~pixelgroup.tasks.base.Task` and
adding an entry here (docs/architecture.md has a worked example).
"""

from pixelgroup.errors import ConfigError
from pixelgroup.tasks.base import Task, TaskEvaluator
from pixelgroup.tasks.boundary import BoundaryTask
from pixelgroup.tasks.instance import InstanceTask
from pixelgroup.tasks.proposals import ProposalTask
from pixelgroup.tasks.semantic import SemanticTask
from pixelgroup.tasks.voc_instance import VOCInstanceTask
from pixelgroup.tasks.volume import VolumeTask

__all__ = ["TASKS", "get_task", "Task", "TaskEvaluator"]

TASKS: dict[str, Task] = {
    "instance": InstanceTask(),
    "semantic": SemanticTask(),
    "proposals": ProposalTask(),
    "voc_instance": VOCInstanceTask(),
    "boundary": BoundaryTask(),
    "volume": VolumeTask(),
}


def get_task(name: str) -> Task:
    """The registered task ``name``; unknown names raise ConfigError listing the valid ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
