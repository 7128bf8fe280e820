"""Model-agnostic metrics: pure functions and evaluators with one protocol.

Every evaluator is an :class:`Evaluator`: ``reset()``, ``process(predictions, targets)`` (two
sequences of per-image records, predictions first) and ``evaluate() -> dict[str, float]``.
They are written on :class:`~pixelgroup.metrics.evaluator.PerImageEvaluator` (the records
checked, then added image by image); :class:`CompositeEvaluator` feeds several the same records
and merges their scores under prefixes, refusing a key reported twice. Structured results for
plots come from a separate method (``BoundaryEvaluator.scores()``,
``ProposalEvaluator.recall()``, ``InstanceMAPEvaluator.curves()``,
``SemanticEvaluator.class_iou()``).

=====================  ==========================================  ============================
evaluator              records                                     scores
=====================  ==========================================  ============================
InstanceEvaluator      InstancePrediction / InstanceTarget         AP50, AP70, MBO, covering, ARI
MatchingEvaluator      InstancePrediction / InstanceTarget         acc50..acc95, F1, PQ (DSB 2018)
CocoEvaluator          InstancePrediction / InstanceTarget         COCO mask AP, AP50, AP75, AR@k
ProposalEvaluator      ProposalPrediction / ProposalTarget         AR@k, R50@k (masks, boxes)
InstanceMAPEvaluator   InstanceMAPPrediction / InstanceMAPTarget   VOC mAP^r@0.5, 0.7
SemanticEvaluator      SemanticPrediction / SemanticTarget         mIoU, accuracies, boundary F
BoundaryEvaluator      BoundaryPrediction / BoundaryTarget         BSDS ODS, OIS, AP, R50
=====================  ==========================================  ============================

Overlaps and matching are shared (:mod:`pixelgroup.metrics.matching`): one mask IoU and one
greedy matcher; :mod:`pixelgroup.metrics.label_matching` has the optimal one-to-one matching of
two label maps that microscopy benchmarks count with.
"""

from pixelgroup.metrics.boundary import (
    BoundaryEvaluator,
    BoundaryPrediction,
    BoundaryScores,
    BoundaryTarget,
)
from pixelgroup.metrics.coco import CocoEvaluator
from pixelgroup.metrics.evaluator import CompositeEvaluator, Evaluator
from pixelgroup.metrics.instance import (
    InstanceEvaluator,
    InstancePrediction,
    InstanceTarget,
    average_precision,
    mean_best_overlap,
    segmentation_covering,
)
from pixelgroup.metrics.instance_map import (
    InstanceMAPEvaluator,
    InstanceMAPPrediction,
    InstanceMAPTarget,
)
from pixelgroup.metrics.label_matching import (
    MATCH_THRESHOLDS,
    MatchCounts,
    MatchingEvaluator,
    label_iou,
    match_iou,
    match_labels,
    matching_scores,
)
from pixelgroup.metrics.matching import box_iou, greedy_match, mask_iou
from pixelgroup.metrics.proposals import ProposalEvaluator, ProposalPrediction, ProposalTarget
from pixelgroup.metrics.semantic import SemanticEvaluator, SemanticPrediction, SemanticTarget

__all__ = [
    "Evaluator",
    "CompositeEvaluator",
    "InstanceEvaluator",
    "InstancePrediction",
    "InstanceTarget",
    "CocoEvaluator",
    "MatchingEvaluator",
    "MatchCounts",
    "MATCH_THRESHOLDS",
    "label_iou",
    "match_iou",
    "match_labels",
    "matching_scores",
    "ProposalEvaluator",
    "ProposalPrediction",
    "ProposalTarget",
    "InstanceMAPEvaluator",
    "InstanceMAPPrediction",
    "InstanceMAPTarget",
    "SemanticEvaluator",
    "SemanticPrediction",
    "SemanticTarget",
    "BoundaryEvaluator",
    "BoundaryPrediction",
    "BoundaryTarget",
    "BoundaryScores",
    "mask_iou",
    "box_iou",
    "greedy_match",
    "average_precision",
    "mean_best_overlap",
    "segmentation_covering",
]
