import numpy as np
import pytest
import torch

from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics import (
    BoundaryEvaluator,
    CocoEvaluator,
    CompositeEvaluator,
    Evaluator,
    InstanceEvaluator,
    InstanceMAPEvaluator,
    InstancePrediction,
    InstanceTarget,
    MatchingEvaluator,
    ProposalEvaluator,
    SemanticEvaluator,
)


@pytest.mark.parametrize(
    "evaluator",
    [
        InstanceEvaluator(),
        MatchingEvaluator(),
        CocoEvaluator(),
        ProposalEvaluator(),
        InstanceMAPEvaluator(),
        SemanticEvaluator(num_classes=2),
        BoundaryEvaluator(),
        CompositeEvaluator([InstanceEvaluator()]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_evaluator_meets_the_protocol(evaluator):
    assert isinstance(evaluator, Evaluator)


def _records():
    gt = np.array([[0, 1, 1], [0, 2, 2], [-1, -1, 2]])
    pred = np.array([[0, 1, 1], [0, 2, 2], [1, 2, 2]])
    return [InstancePrediction(pred, np.array([0.9, 0.8]))], [InstanceTarget(gt)]


def test_composite_prefixes_and_merges_in_order():
    ev = CompositeEvaluator(
        [InstanceEvaluator(ignore_label=-1), CocoEvaluator(ignore_label=-1)], ["", "coco_"]
    )
    ev.reset()
    ev.process(*_records())
    scores = ev.evaluate()
    alone = InstanceEvaluator(ignore_label=-1)
    alone.process(*_records())
    coco = CocoEvaluator(ignore_label=-1)
    coco.process(*_records())
    expected = {**alone.evaluate(), **{f"coco_{k}": v for k, v in coco.evaluate().items()}}
    assert list(scores) == list(expected)
    np.testing.assert_equal(list(scores.values()), list(expected.values()))
    ev.reset()
    assert ev.evaluate()["images"] == 0


def test_composite_refuses_a_key_reported_twice():
    ev = CompositeEvaluator([InstanceEvaluator(), CocoEvaluator()])
    ev.process(*_records())
    with pytest.raises(InputError, match="InstanceEvaluator and CocoEvaluator both report 'AP50'"):
        ev.evaluate()


def test_composite_checks_its_arguments():
    with pytest.raises(InputTypeError, match=r"evaluators\[1\] must have reset\(\), process"):
        CompositeEvaluator([InstanceEvaluator(), object()])
    with pytest.raises(InputError, match="prefixes must be 2 strings"):
        CompositeEvaluator([InstanceEvaluator(), CocoEvaluator()], ["coco_"])


def test_ignore_label_is_background_in_both_maps():
    predictions, targets = _records()
    ev = InstanceEvaluator(ignore_label=-1)
    ev.process(predictions, targets)
    masked = targets[0].labels == -1
    pred = np.where(masked, 0, predictions[0].labels)
    gt = np.where(masked, 0, targets[0].labels)
    plain = InstanceEvaluator()
    plain.process([InstancePrediction(torch.from_numpy(pred), [0.9, 0.8])], [InstanceTarget(gt)])
    assert ev.evaluate() == plain.evaluate()
