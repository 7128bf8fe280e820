"""Embedding losses: the instance-aware pair loss and its recurrent (per-GBMS-loop) form."""

from pixelgroup.losses.pairwise import instance_pair_weights, pairwise_embedding_loss
from pixelgroup.losses.recurrent import RecurrentGroupingLoss

__all__ = ["pairwise_embedding_loss", "instance_pair_weights", "RecurrentGroupingLoss"]
