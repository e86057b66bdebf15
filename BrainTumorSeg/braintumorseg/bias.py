"""N4 bias-field correction: the field is fitted on a shrunk image and applied at full resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class BiasSettings:
    """N4 settings; `shrink` is the factor the image is reduced by for fitting the field, `workers` the
    number of volumes corrected at the same time."""

    shrink: int = 4
    iterations: tuple[int, ...] = (20, 20, 20)
    convergence: float = 1e-3
    control_points: int = 4
    max_negative_fraction: float = 0.05
    workers: int = 2


class BiasCorrector:
    """Removes a smooth multiplicative intensity field inside the brain mask (SimpleITK N4)."""

    def __init__(self, settings: BiasSettings = BiasSettings()):
        self.settings = settings

    def skip_reason(self, image: np.ndarray, mask: np.ndarray) -> str | None:
        """Why N4 cannot apply to this image (already normalized data), or None."""
        values = image[mask]
        if values.size == 0 or np.mean(values < 0) > self.settings.max_negative_fraction:
            return "has many negative intensities (looks already normalized): bias correction skipped"
        return None

    def correct(self, image: np.ndarray, mask: np.ndarray, spacing: tuple[float, ...],
                fit_mask: np.ndarray | None = None) -> np.ndarray:
        """Return the corrected image (z, y, x array); voxels outside the mask are unchanged. The field is fitted
        on `fit_mask` (default: the mask), e.g. the brain without the tumour, and applied on all of the mask."""
        s = self.settings
        fit_mask = (mask if fit_mask is None else fit_mask & mask) & (image > 0)
        full = sitk.GetImageFromArray(np.where(fit_mask, image, 0).astype(np.float32))
        full.SetSpacing(tuple(float(v) for v in spacing))
        mask_image = sitk.GetImageFromArray(fit_mask.astype(np.uint8))
        mask_image.CopyInformation(full)
        shrink = [max(1, min(s.shrink, n // 4)) for n in full.GetSize()]
        small = sitk.Shrink(full, shrink)
        small_mask = sitk.Shrink(mask_image, shrink)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(list(s.iterations))
        n4.SetConvergenceThreshold(s.convergence)
        n4.SetNumberOfControlPoints([s.control_points] * 3)
        n4.Execute(small, small_mask)
        log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(full))
        corrected = image / np.exp(log_field)
        return np.where(mask, corrected, image).astype(np.float32)
