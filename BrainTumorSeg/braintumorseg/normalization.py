"""Intensity normalization inside the brain: per-channel z-score, or Nyúl histogram standardization."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NYUL_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def zscore(image: np.ndarray, mask: np.ndarray, statistics: np.ndarray | None = None) -> np.ndarray:
    """Subtract the brain mean and divide by the brain standard deviation, both taken inside `statistics`
    (default: the mask); zero outside the mask."""
    values = image[mask if statistics is None else statistics]
    if values.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    mean, std = float(values.mean()), float(values.std())
    out = (image - mean) / (std if std > 1e-8 else 1.0)
    return np.where(mask, out, 0.0).astype(np.float32)


@dataclass
class NyulStandardizer:
    """Nyúl & Udupa piecewise-linear histogram standardization onto learned landmarks.

    `landmarks` is the standard scale (one value per percentile); it is learned by `fit` from
    training images and stored in the model card. Output is rescaled to roughly unit spread so the
    network sees values of the same order as with z-score.
    """

    landmarks: list[float] = field(default_factory=list)
    percentiles: tuple[float, ...] = NYUL_PERCENTILES

    @classmethod
    def fit(cls, images: list[np.ndarray], masks: list[np.ndarray],
            percentiles: tuple[float, ...] = NYUL_PERCENTILES,
            scale: tuple[float, float] = (0.0, 100.0)) -> "NyulStandardizer":
        """Learn the standard landmarks: each image's landmarks mapped linearly onto `scale`, averaged."""
        mapped = []
        for image, mask in zip(images, masks):
            marks = np.percentile(image[mask], percentiles)
            span = marks[-1] - marks[0]
            if span <= 0:
                continue
            mapped.append(scale[0] + (marks - marks[0]) / span * (scale[1] - scale[0]))
        if not mapped:
            raise ValueError("no usable image to learn Nyúl landmarks from")
        return cls(landmarks=np.mean(mapped, axis=0).tolist(), percentiles=tuple(percentiles))

    def apply(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Map the image's own landmarks onto the standard ones; zero outside the mask."""
        source = np.percentile(image[mask], self.percentiles)
        target = np.asarray(self.landmarks, dtype=np.float64)
        source = np.maximum.accumulate(source + np.arange(len(source)) * 1e-6)
        out = np.interp(image, source, target)
        low_slope = (target[1] - target[0]) / (source[1] - source[0])
        high_slope = (target[-1] - target[-2]) / (source[-1] - source[-2])
        out = np.where(image < source[0], target[0] + (image - source[0]) * low_slope, out)
        out = np.where(image > source[-1], target[-1] + (image - source[-1]) * high_slope, out)
        spread = (target[-1] - target[0]) / 4.0
        out = (out - target[len(target) // 2]) / spread
        return np.where(mask, out, 0.0).astype(np.float32)
