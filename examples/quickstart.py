"""Group two clusters of random unit vectors with the recurrent mean-shift layer."""

import torch

from pixelgroup import RecurrentMeanShift, normalize_to_sphere, pairwise_embedding_loss

generator = torch.Generator().manual_seed(0)
centers = normalize_to_sphere(torch.randn(2, 8, generator=generator), dim=-1)
labels = torch.arange(2).repeat_interleave(100)  # (N,) = (200,)
points = normalize_to_sphere(
    centers[labels] + 0.3 * torch.randn(200, 8, generator=generator), dim=-1
)
x = points[None]  # (B, N, D) = (1, 200, 8)

iterates = RecurrentMeanShift(bandwidth=0.2, num_iters=10)(x)
for t in (0, 1, 5, 10):
    loss = pairwise_embedding_loss(iterates[t], labels[None], margin=0.5)["loss"]
    spread = 1 - (iterates[t][0] @ iterates[t][0].T)[labels[:, None] == labels].mean()
    print(
        f"loop {t:2d}: pair loss {loss.item():.4f}, mean within-cluster 1 - cos {spread.item():.5f}"
    )
