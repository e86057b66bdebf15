"""Compare two folders of label maps voxel for voxel (and the volumes in their reports): the regression check of
a change that must not change results. Usage: python scripts/compare_labels.py BEFORE_DIR AFTER_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def main(before: Path, after: Path) -> int:
    changed = 0
    names = sorted(p.name for p in before.glob("*.nii.gz"))
    if not names:
        print(f"no label maps in {before}")
        return 2
    for name in names:
        if not (after / name).exists():
            changed += 1
            print(f"{name:<32} MISSING from {after}")
            continue
        a, b = sitk.ReadImage(str(before / name)), sitk.ReadImage(str(after / name))
        differ = int(np.count_nonzero(sitk.GetArrayViewFromImage(a) != sitk.GetArrayViewFromImage(b)))
        same_grid = a.GetSize() == b.GetSize() and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(
            a.GetDirection(), b.GetDirection()) and np.allclose(a.GetSpacing(), b.GetSpacing())
        report = name.replace(".nii.gz", ".json")
        volumes = [json.loads((d / report).read_text())["volumes_ml"] for d in (before, after)]
        ok = differ == 0 and same_grid and volumes[0] == volumes[1]
        changed += not ok
        print(f"{name:<32} {'identical' if ok else 'CHANGED'}: {differ} voxels differ, grid "
              f"{'same' if same_grid else 'differs'}, whole tumour {volumes[0]['whole_tumour']} -> "
              f"{volumes[1]['whole_tumour']} mL")
    print(f"{len(names) - changed} of {len(names)} identical")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
