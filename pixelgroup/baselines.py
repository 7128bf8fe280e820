"""Classical segmentations to benchmark against: no training, a few scikit-image calls each.

Every baseline maps ``image (C, H, W)`` (float, tensor or array, any range; channels averaged
where the method wants grey) to ``labels (H, W)`` int64:

* :func:`watershed_nuclei`: bright blobs on a dark background (fluorescent nuclei): Gaussian
  smoothing, Otsu threshold, distance transform, its local maxima as markers, watershed of the
  negated distance inside the foreground; 0 = background, 1..K objects.
* :func:`felzenszwalb_segments`: Felzenszwalb & Huttenlocher's graph-based merging of pixels
  (photos); every pixel in one of the segments 1..K.
* :func:`slic_segments`: SLIC superpixels (k-means in colour and position); segments 1..K.

Cost: O(H·W) per call up to the log factors of the scikit-image implementations.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pixelgroup._checks import check_in_range, check_int, check_positive
from pixelgroup.errors import InputError, InputTypeError

__all__ = ["watershed_nuclei", "felzenszwalb_segments", "slic_segments"]


def _image(image: object) -> np.ndarray:
    """``(C, H, W)`` float tensor or array -> ``(H, W, C)`` float64 array, checked."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise InputTypeError(
            f"image must be a torch.Tensor or numpy array, got {type(image).__name__}"
        )
    if image.ndim != 3 or min(image.shape) < 1:
        raise InputError(f"image must have shape (C, H, W), got shape {image.shape}")
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise InputTypeError(f"image must hold numbers, got dtype {image.dtype}")
    out: np.ndarray = image.astype(np.float64).transpose(1, 2, 0)
    if not np.isfinite(out).all():
        raise InputError(f"image contains {int((~np.isfinite(out)).sum())} non-finite values")
    return out


def watershed_nuclei(
    image: object, sigma: float = 1.0, min_distance: int = 5, min_area: int = 16
) -> np.ndarray:
    """Bright, possibly touching blobs of ``image (C, H, W)`` -> ``labels (H, W)`` int64.

    Args:
        image: ``(C, H, W)``; channels are averaged.
        sigma: Gaussian smoothing in pixels before the threshold.
        min_distance: least distance in pixels between two objects' centres (markers are the
            distance transform's maxima this far apart), about an object's radius / 2.
        min_area: objects smaller than this many pixels are dropped (set to background).

    Returns:
        0 background, 1..K objects in order of first appearance (row-major); all 0 when the
        image is constant (no threshold separates anything).

    Example:
        >>> img = np.zeros((1, 20, 40)); img[0, 5:15, 5:15] = img[0, 5:15, 25:35] = 1
        >>> np.unique(watershed_nuclei(img)).tolist()
        [0, 1, 2]
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import relabel_sequential, watershed

    sigma = check_positive(sigma, "sigma")
    min_distance = check_int(min_distance, "min_distance", minimum=1)
    min_area = check_int(min_area, "min_area", minimum=0)
    grey = gaussian(_image(image).mean(2), sigma=sigma)
    if grey.min() == grey.max():
        return np.zeros(grey.shape, np.int64)
    foreground = grey > threshold_otsu(grey)
    distance = ndimage.distance_transform_edt(foreground)
    regions, _ = ndimage.label(foreground)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=regions, exclude_border=False
    )
    markers = np.zeros(grey.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=foreground)
    areas = np.bincount(labels.ravel())
    labels[areas[labels] < min_area] = 0
    return relabel_sequential(labels)[0].astype(np.int64)


def felzenszwalb_segments(
    image: object, scale: float = 100.0, sigma: float = 0.5, min_size: int = 50
) -> np.ndarray:
    """Felzenszwalb-Huttenlocher segments of ``image (C, H, W)`` -> ``labels (H, W)`` 1..K.

    ``scale`` (larger: larger segments), ``sigma`` (pre-smoothing) and ``min_size`` (pixels)
    are :func:`skimage.segmentation.felzenszwalb`'s; the image is scaled to [0, 1] first so
    that ``scale`` means the same for any value range.

    Example:
        >>> img = np.zeros((3, 30, 30)); img[:, :, 15:] = 1
        >>> np.unique(felzenszwalb_segments(img)).tolist()
        [1, 2]
    """
    from skimage.segmentation import felzenszwalb

    scale = check_positive(scale, "scale")
    sigma = check_in_range(sigma, "sigma", 0.0, math.inf, high_open=True)
    min_size = check_int(min_size, "min_size", minimum=1)
    image = _unit_range(_image(image))
    labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1)
    return labels.astype(np.int64) + 1


def slic_segments(
    image: object, num_segments: int = 100, compactness: float = 10.0, sigma: float = 0.0
) -> np.ndarray:
    """SLIC superpixels of ``image (C, H, W)`` -> ``labels (H, W)`` 1..K (K about
    ``num_segments``) by :func:`skimage.segmentation.slic`.

    The image is scaled to [0, 1], then a 3-channel one to CIELAB (L in 0..100, as slic does)
    and any other one to 0..100, so that ``compactness`` (colour vs position; 10 is slic's
    usual value for CIELAB) means the same for every input. ``sigma`` > 0 pre-smooths.

    Example:
        >>> img = np.zeros((3, 30, 30)); img[:, :, 15:] = 1
        >>> labels = slic_segments(img, num_segments=4)
        >>> pairs = np.unique(np.stack([labels.ravel(), img[0].ravel()]), axis=1)
        >>> pairs.shape[1] == len(np.unique(labels))  # each segment has one colour
        True
    """
    from skimage.segmentation import slic

    num_segments = check_int(num_segments, "num_segments", minimum=1)
    compactness = check_positive(compactness, "compactness")
    sigma = check_in_range(sigma, "sigma", 0.0, math.inf, high_open=True)
    image = _unit_range(_image(image))
    if image.shape[2] != 3:
        image = 100 * image
    labels = slic(
        image,
        n_segments=num_segments,
        compactness=compactness,
        sigma=sigma,
        channel_axis=-1,
        start_label=1,
    )
    return labels.astype(np.int64)


def _unit_range(image: np.ndarray) -> np.ndarray:
    """``image`` scaled to [0, 1] by its own minimum and maximum (a constant image to 0)."""
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)
