"""The worked example of docs/architecture.md ("Adding a task") is code that runs: its task
registered with one line trains, evaluates and predicts through the unchanged engine."""

from __future__ import annotations

import re
import types
from pathlib import Path

from pixelgroup import tasks
from pixelgroup.data.io import write_png
from pixelgroup.engine import evaluate, load_model, predict_files, train
from pixelgroup.tasks.base import Task
from tests._tiny import tiny_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _example_module() -> types.ModuleType:
    text = DOC.read_text().split("## Adding a task", 1)[1]
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    module = types.ModuleType("counting_example")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def test_the_counting_task_runs_train_eval_predict(tmp_path, monkeypatch):
    example = _example_module()
    task: Task = example.CountingTask()
    monkeypatch.setitem(tasks.TASKS, "counting", task)  # the doc's one registry line
    cfg = tiny_config(task="counting")
    checkpoint = train(cfg, tmp_path / "run", progress=False).checkpoint
    model, loaded, _ = load_model(checkpoint)
    assert loaded.task == "counting"
    metrics = evaluate(model, loaded, progress=False)
    assert set(metrics) == {"count_error"} and metrics["count_error"] >= 0
    image = task.build_dataset(loaded, "test")[0].image  # type: ignore[index]
    write_png((image.permute(1, 2, 0).numpy() * 255).astype("uint8"), tmp_path / "a.png")
    written = predict_files(model, loaded, [tmp_path / "a.png"], tmp_path / "pred", progress=False)
    assert written.paths == [tmp_path / "pred" / "a.txt"]
    assert int(written.paths[0].read_text()) >= 0
