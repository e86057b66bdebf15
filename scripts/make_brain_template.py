"""Writes the brain template the skull stripping registers: the MNI ICBM152 2009a T1 brain at 2 mm.

Usage: python scripts/make_brain_template.py ../shared/data/other_mri/templates/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import SimpleITK as sitk
from braintumorseg.brain_extraction import isotropic

OUTPUT = Path(__file__).resolve().parents[1] / "BrainTumorSeg/Resources/Templates/mni_icbm152_2009a_t1_brain_2mm.nii.gz"
SPACING_MM = 2.0


def main(source: str) -> None:
    t1 = sitk.Cast(sitk.ReadImage(source), sitk.sitkFloat32)
    small = isotropic(sitk.SmoothingRecursiveGaussian(t1, SPACING_MM / 2), SPACING_MM)
    small = sitk.Mask(small, sitk.Resample(t1, small, sitk.Transform(), sitk.sitkNearestNeighbor) > 0)
    sitk.WriteImage(sitk.Cast(sitk.RescaleIntensity(small, 0, 255), sitk.sitkUInt8), str(OUTPUT), True)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size // 1024} KiB, size {small.GetSize()})")


if __name__ == "__main__":
    main(sys.argv[1])
