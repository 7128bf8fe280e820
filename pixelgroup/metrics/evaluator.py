"""The evaluator contract and what every evaluator shares.

:class:`Evaluator` is the protocol: ``reset()``, ``process(predictions, targets)``,
``evaluate() -> dict[str, float]``. :class:`PerImageEvaluator` is the one per-image loop the
evaluators of this package are written on (check the records, then add image by image);
:class:`CompositeEvaluator` runs several evaluators on the same records and merges their
scores, each under its prefix, refusing a key that two of them report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pixelgroup.errors import InputError, InputTypeError
from pixelgroup.metrics._inputs import check_records

__all__ = ["Evaluator", "PerImageEvaluator", "CompositeEvaluator"]


@runtime_checkable
class Evaluator(Protocol):
    """Accumulates per-image records and reports named scores.

    ``process`` may be called any number of times between ``reset`` and ``evaluate``; the
    records are whatever the evaluator documents (two sequences of per-image records for the
    evaluators of :mod:`pixelgroup.metrics`, a model output and its batch for a task's).
    """

    def reset(self) -> None: ...

    def process(self, predictions: Any, targets: Any, /) -> None: ...

    def evaluate(self) -> dict[str, float]: ...


class PerImageEvaluator:
    """Base of an evaluator of per-image record pairs: ``process`` checks that ``predictions``
    and ``targets`` are equally long sequences of :attr:`prediction_type` /
    :attr:`target_type` (all of them before any is added), then hands image ``i``'s pair to
    :meth:`process_image`. A subclass sets the two types and writes ``reset``,
    ``process_image`` and ``evaluate``."""

    prediction_type: ClassVar[type]
    target_type: ClassVar[type]

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, predictions: Sequence[Any], targets: Sequence[Any]) -> None:
        """Add images: ``predictions[i]`` and ``targets[i]`` describe image i."""
        check_records(predictions, targets, self.prediction_type, self.target_type)
        for i, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
            self.process_image(prediction, target, i)

    def process_image(self, prediction: Any, target: Any, i: int) -> None:
        """Add one image; ``i`` is its index in the ``process`` call, for messages."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError


class CompositeEvaluator:
    """Several evaluators fed the same records; their scores merged into one dict.

    Args:
        evaluators: each with ``reset``, ``process(predictions, targets)`` and ``evaluate``.
        prefixes: one per evaluator, put in front of its keys (default: none).

    ``evaluate()`` raises :class:`~pixelgroup.errors.InputError` when two evaluators report
    the same (prefixed) key, rather than letting one score overwrite the other.

    Example:
        >>> from pixelgroup.metrics import CocoEvaluator, InstanceEvaluator
        >>> ev = CompositeEvaluator([InstanceEvaluator(), CocoEvaluator()], ["", "coco_"])
        >>> sorted(k for k in ev.evaluate() if k.endswith("AP50"))
        ['AP50', 'coco_AP50']
    """

    def __init__(
        self, evaluators: Sequence[Evaluator], prefixes: Sequence[str] | None = None
    ) -> None:
        self.evaluators = list(evaluators)
        for i, evaluator in enumerate(self.evaluators):
            if not isinstance(evaluator, Evaluator):
                raise InputTypeError(
                    f"evaluators[{i}] must have reset(), process() and evaluate(), got "
                    f"{type(evaluator).__name__}"
                )
        self.prefixes = [""] * len(self.evaluators) if prefixes is None else list(prefixes)
        if len(self.prefixes) != len(self.evaluators) or not all(
            isinstance(p, str) for p in self.prefixes
        ):
            raise InputError(
                f"prefixes must be {len(self.evaluators)} "
                f"strings (one per evaluator), got {self.prefixes!r}"
            )

    def reset(self) -> None:
        for evaluator in self.evaluators:
            evaluator.reset()

    def process(self, predictions: Any, targets: Any, /) -> None:
        for evaluator in self.evaluators:
            evaluator.process(predictions, targets)

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        source: dict[str, str] = {}
        for evaluator, prefix in zip(self.evaluators, self.prefixes, strict=True):
            name = type(evaluator).__name__
            for key, value in evaluator.evaluate().items():
                key = f"{prefix}{key}"
                if key in out:
                    raise InputError(
                        f"{source[key]} and {name} both report {key!r}; give one of them a prefix"
                    )
                out[key], source[key] = value, name
        return out
