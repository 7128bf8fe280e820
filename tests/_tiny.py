"""The smallest dense embedding network the engine and CLI tests build (VOC-style tasks)."""

TINY_DENSE_OPTIONS = {
    "backbone": "efficientnet_lite0",
    "embedding_dim": 8,
    "head_channels": 16,
    "embedding_stride": 4,
}
