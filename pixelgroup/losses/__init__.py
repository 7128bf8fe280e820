"""Embedding losses: the instance-aware pair loss, its recurrent (per-GBMS-loop) form and the
centre-vote loss of a spatial embedding."""

from pixelgroup.losses.center import center_vote_loss
from pixelgroup.losses.pairwise import instance_pair_weights, pairwise_embedding_loss
from pixelgroup.losses.recurrent import RecurrentGroupingLoss

__all__ = [
    "center_vote_loss",
    "pairwise_embedding_loss",
    "instance_pair_weights",
    "RecurrentGroupingLoss",
]
