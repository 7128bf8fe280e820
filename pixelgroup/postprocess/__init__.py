"""No-grad inference on embeddings: instances, proposals, boundary maps."""

from pixelgroup.postprocess.grouping import InstanceGrouping, group_pixels
from pixelgroup.postprocess.instances import extract_instances
from pixelgroup.postprocess.proposals import Proposals, propose

__all__ = ["InstanceGrouping", "group_pixels", "extract_instances", "Proposals", "propose"]
