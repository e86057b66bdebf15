"""Clinical-like exams made from BraTS cases: head pose, motion between series, thick slices, bias, scale.

A BraTS case is four co-registered, skull-stripped 1 mm volumes in the SRI24 atlas pose. A scanner writes
something else: each series on its own grid, the head turned in the scanner, a little motion between
series, 2D series with thick slices, a smooth coil (bias) field and an arbitrary integer scale. `make_exam`
simulates all of these from one case, seeded; the reference label goes onto the exam's T1Gd grid (nearest
neighbour, through the T1Gd's own pose), so a result on that grid is scored against it directly.
Two options go further (`--with`): `skull` gives each series a synthetic head (CSF rim, bone, scalp, noisy air)
before it is acquired, so the engine must strip it; `thick-t1c` acquires the T1Gd as a 2D thick-slice series
too. docs/clinical-benchmark.md describes the choices.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter1d

from braintumorseg.errors import InputError
from braintumorseg.images import read_image
from braintumorseg.modalities import DISPLAY_NAMES, MODALITIES
from braintumorseg.output_paths import check_output_folder, write_image_atomic, write_text_atomic

from .discovery import labelled_cases
from .exam_steps import STEPS_OFF, STEPS_ON

# BraTS 2018 file suffixes, so `find_cases` and `evaluate` read the exams like any BraTS case.
FILE_SUFFIX = {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}
# A slice profile's FWHM is its thickness: sigma = thickness / (2 sqrt(2 ln 2)).
FWHM_TO_SIGMA = 1.0 / 2.3548
# Acquisition planes of the 2D series: index axes (x, y, z) of the grid as scanner axes (L, P, S), and
# how often each plane is chosen (clinical 2D protocols are mostly axial).
PLANES = {"axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
          "coronal": ((1, 0, 0), (0, 0, 1), (0, 1, 0)),
          "sagittal": ((0, 1, 0), (0, 0, 1), (1, 0, 0))}
PLANE_ODDS = {"axial": 0.7, "coronal": 0.2, "sagittal": 0.1}


@dataclass(frozen=True)
class ExamSettings:
    """Ranges the generator draws from (angles in degrees, lengths in mm)."""

    head_rotation_deg: float = 18.0     # per axis, uniform in ±
    head_translation_mm: float = 10.0   # per axis, uniform in ±
    motion_rotation_deg: tuple[float, float] = (1.0, 3.0)   # per series (not T1Gd), angle about a random axis
    motion_translation_mm: tuple[float, float] = (1.0, 3.0)  # per series, length along a random direction
    slice_thickness_mm: tuple[float, float] = (3.0, 6.0)     # 2D series
    slice_gap_mm: tuple[float, float] = (0.0, 1.0)
    in_plane_mm: tuple[float, float] = (0.8, 1.0)            # 2D series
    t1c_spacing_mm: tuple[float, float] = (0.9, 1.2)         # 3D T1Gd, per axis
    oblique_deg: float = 8.0            # grid tilt of each series (technologist's angulation), per axis ±
    fov_margin_mm: tuple[float, float] = (5.0, 25.0)         # field of view beyond the brain, per side
    bias_coefficient: float = 0.25      # MONAI RandBiasField coefficient range (degree 3)
    peak_range: tuple[float, float] = (300.0, 4000.0)        # the stored 99.5th percentile, per series
    noise_fraction: float = 0.02        # Gaussian noise sigma as a share of the mean inside the imaged object
                                        # (the brain; with `skull` the whole field of view, air included)
    skull: bool = False                 # give each series a synthetic head (HEAD_SHELLS) before it is acquired
    thick_t1c: bool = False             # acquire the T1Gd as a 2D thick-slice series, like the others


# (inner mm, outer mm, share of the brain's median intensity) outside the brain, per sequence: CSF, bone, scalp.
# CSF is dark on T1, T1Gd and FLAIR and bright on T2; fat makes the scalp bright on all four. Noisy air fills
# HEAD_PAD_MM more around the case, so it reaches the edge of any field of view the generator draws.
HEAD_SHELLS = {"t1": ((0.0, 3.0, 0.15), (3.0, 8.0, 0.05), (8.0, 14.0, 1.4)),
               "t1c": ((0.0, 3.0, 0.15), (3.0, 8.0, 0.05), (8.0, 14.0, 1.4)),
               "t2": ((0.0, 3.0, 2.0), (3.0, 8.0, 0.05), (8.0, 14.0, 1.2)),
               "flair": ((0.0, 3.0, 0.15), (3.0, 8.0, 0.05), (8.0, 14.0, 1.0))}
HEAD_PAD_MM = 60.0


def settings_without(steps: tuple[str, ...], settings: ExamSettings = ExamSettings(),
                     extras: tuple[str, ...] = ()) -> ExamSettings:
    """The settings with the named steps switched off and the named `extras` (STEPS_ON) on; the random draws
    stay the same, so the exams differ only in those steps."""
    changes = {}
    for step in steps:
        changes.update(STEPS_OFF[step])
    for extra in extras:
        changes.update(STEPS_ON[extra])
    return replace(settings, **changes)


@dataclass
class SeriesRecord:
    """What was done to one series (written to exam.json)."""

    plane: str
    spacing_mm: list[float]
    size: list[int]
    slice_thickness_mm: float
    motion_rotation_deg: float
    motion_translation_mm: float
    direction: list[float]
    origin: list[float]
    peak: float


@dataclass
class ExamRecord:
    """A generated exam's parameters: seed, head pose and each series."""

    case: str
    seed: int
    head_rotation_deg: list[float]
    head_translation_mm: list[float]
    series: dict[str, SeriesRecord] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)  # STEPS_ON names that made this exam


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def axis_angle_matrix(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation by an angle about a unit axis (Rodrigues)."""
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def rigid(matrix: np.ndarray, translation: np.ndarray, centre: np.ndarray) -> sitk.AffineTransform:
    """x -> matrix (x - centre) + centre + translation, as a SimpleITK transform."""
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix.ravel().tolist())
    transform.SetCenter(centre.tolist())
    transform.SetTranslation(translation.tolist())
    return transform


def compose(outer: sitk.AffineTransform, inner: sitk.AffineTransform) -> sitk.AffineTransform:
    """outer(inner(x)) as one affine transform."""
    a, b = (np.array(t.GetMatrix()).reshape(3, 3) for t in (outer, inner))
    origin_of = [np.array(t.TransformPoint((0.0, 0.0, 0.0))) for t in (outer, inner)]  # where each sends 0
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((a @ b).ravel().tolist())
    transform.SetTranslation((a @ origin_of[1] + origin_of[0]).tolist())
    return transform


def brain_corners(mask: sitk.Image) -> np.ndarray:
    """The 8 physical corners of the mask's bounding box (the brain of a skull-stripped case)."""
    array = sitk.GetArrayFromImage(mask)
    index = np.argwhere(array)
    lo, hi = index.min(0)[::-1], index.max(0)[::-1]  # (x, y, z) indices
    corners = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    return np.array([mask.TransformContinuousIndexToPhysicalPoint([float(c) for c in p]) for p in corners])


def covering_grid(points: np.ndarray, direction: np.ndarray, spacing: np.ndarray, margins: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Origin and size of a grid with this direction and spacing holding the points plus per-side margins."""
    local = points @ direction  # coordinates along the grid's axes (direction columns)
    lo, hi = local.min(0) - margins[:, 0], local.max(0) + margins[:, 1]
    size = np.ceil((hi - lo) / spacing).astype(int) + 1
    return direction @ lo, size


def make_grid(origin: np.ndarray, size: np.ndarray, spacing: np.ndarray, direction: np.ndarray) -> sitk.Image:
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetOrigin(origin.tolist())
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(direction.ravel().tolist())
    return grid


def _draw_plane(rng: np.random.Generator) -> str:
    names = list(PLANE_ODDS)
    return names[int(rng.choice(len(names), p=[PLANE_ODDS[n] for n in names]))]


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.normal(size=3)
    return vector / np.linalg.norm(vector)


def _bias_field(shape_zyx: tuple[int, ...], coefficient: float, seed: int) -> np.ndarray:
    """A smooth multiplicative field over the grid (MONAI's RandBiasField on a field of ones)."""
    from monai.transforms import RandBiasField
    transform = RandBiasField(degree=3, coeff_range=(-coefficient, coefficient), prob=1.0)
    transform.set_random_state(seed=seed)
    return np.asarray(transform(np.ones((1, *shape_zyx), np.float32)))[0]


def _padded(image: sitk.Image) -> sitk.Image:
    """The image grown by HEAD_PAD_MM of zeros on every side: room for the head's air up to any field of view."""
    pad = [int(np.ceil(HEAD_PAD_MM / s)) for s in image.GetSpacing()]
    return sitk.ConstantPad(image, pad, pad, 0)


def distance_outside(brain: sitk.Image) -> np.ndarray:
    """Each voxel's distance to the brain in mm (0 inside), as a (z, y, x) array on the `_padded` grid."""
    return sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        _padded(brain), insideIsPositive=False, squaredDistance=False, useImageSpacing=True))


def with_head(image: sitk.Image, distance: np.ndarray, shells: tuple[tuple[float, float, float], ...],
              rng: np.random.Generator) -> sitk.Image:
    """A skull-stripped image given back a head: the shells (HEAD_SHELLS) at their `distance_outside` the brain,
    then noisy air, on the `_padded` grid."""
    image = _padded(image)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    level = float(np.median(array[array > 0]))
    for inner, outer, share in shells:
        array[(distance > inner) & (distance <= outer)] = share * level
    array[distance > shells[-1][1]] = 0.0
    array += np.abs(rng.normal(0.0, 0.02 * level, array.shape)).astype(np.float32)
    head = sitk.GetImageFromArray(array)
    head.CopyInformation(image)
    return head


def _acquire(image: sitk.Image, pose: sitk.Transform, grid: sitk.Image, axis_zyx: int | None,
             thickness: float) -> np.ndarray:
    """The image as seen through `pose` on `grid`; a thick-slice series averages over its slice profile."""
    if axis_zyx is None:
        return sitk.GetArrayFromImage(sitk.Resample(image, grid, pose, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    # Sample on a grid 1 mm along the slice normal, blur with the slice profile, then take the slices.
    fine_spacing = np.array(grid.GetSpacing())
    slice_axis = 2 - axis_zyx
    step = float(fine_spacing[slice_axis])
    fine_spacing[slice_axis] = 1.0
    size = np.array(grid.GetSize())
    size[slice_axis] = int(np.ceil((size[slice_axis] - 1) * step)) + 1
    fine = make_grid(np.array(grid.GetOrigin()), size, fine_spacing, np.array(grid.GetDirection()).reshape(3, 3))
    array = sitk.GetArrayFromImage(sitk.Resample(image, fine, pose, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    array = gaussian_filter1d(array, thickness * FWHM_TO_SIGMA, axis=axis_zyx, mode="constant")
    blurred = sitk.GetImageFromArray(array)
    blurred.CopyInformation(fine)
    return sitk.GetArrayFromImage(sitk.Resample(blurred, grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))


def case_seed(seed: int, case: str) -> list[int]:
    """One random stream per (seed, case): the same exam whatever other cases are generated."""
    return [seed, zlib.crc32(case.encode())]


def make_exam(images: dict[str, sitk.Image], label: sitk.Image, case: str, seed: int,
              settings: ExamSettings = ExamSettings()) -> tuple[dict[str, sitk.Image], sitk.Image, ExamRecord]:
    """A clinical-like exam of a co-registered, skull-stripped case: its series, the label on the T1Gd's
    grid, and what was drawn. `images` are the case's sequences (t1, t1c, t2, flair; any subset)."""
    rng = np.random.default_rng(case_seed(seed, case))
    extra = np.random.default_rng(case_seed(seed, case + "/extras"))  # the extras' draws leave `rng`'s alone
    first = next(iter(images.values()))
    brain = sitk.Cast(first != 0, sitk.sitkUInt8)
    for image in images.values():
        brain = brain | sitk.Cast(image != 0, sitk.sitkUInt8)
    corners = brain_corners(brain)
    centre = corners.mean(0)
    # The head's pose in the scanner: scanner point -> atlas (BraTS) point.
    head_angles = rng.uniform(-1, 1, 3) * settings.head_rotation_deg
    head_shift = rng.uniform(-1, 1, 3) * settings.head_translation_mm
    head = rigid(rotation_matrix(head_angles), head_shift, centre)
    extras = [name for name, on in STEPS_ON.items() if all(getattr(settings, k) == v for k, v in on.items())]
    record = ExamRecord(case, seed, head_angles.round(3).tolist(), head_shift.round(3).tolist(), extras=extras)
    series, poses = {}, {}
    distance = distance_outside(brain) if settings.skull else None
    for modality in (m for m in MODALITIES if m in images):
        three_d = modality == "t1c"
        plane = "axial" if three_d else _draw_plane(rng)
        tilt = rotation_matrix(rng.uniform(-1, 1, 3) * settings.oblique_deg)
        direction = tilt @ np.array(PLANES[plane], float).T  # columns: the grid's index axes
        if three_d:
            spacing = rng.uniform(*settings.t1c_spacing_mm, 3)
            thickness, motion_angle, motion_shift = float(spacing[2]), 0.0, 0.0
            pose = head
        else:
            in_plane = rng.uniform(*settings.in_plane_mm)
            thickness = float(rng.uniform(*settings.slice_thickness_mm))
            spacing = np.array([in_plane, in_plane, thickness + rng.uniform(*settings.slice_gap_mm)])
            motion_angle = float(rng.uniform(*settings.motion_rotation_deg))
            motion_shift = float(rng.uniform(*settings.motion_translation_mm))
            motion = rigid(axis_angle_matrix(_random_unit(rng), motion_angle), _random_unit(rng) * motion_shift,
                           centre)
            pose = compose(head, motion)
        points = np.array([pose.GetInverse().TransformPoint(p.tolist()) for p in corners])
        margins = rng.uniform(*settings.fov_margin_mm, (3, 2))
        plain = (spacing, thickness, three_d)  # the series as the default settings acquire it
        if three_d and settings.thick_t1c:  # an axial 2D series, the reference: the head's pose, no motion
            in_plane = extra.uniform(*settings.in_plane_mm)
            thickness = float(extra.uniform(*settings.slice_thickness_mm))
            spacing = np.array([in_plane, in_plane, thickness + extra.uniform(*settings.slice_gap_mm)])
            three_d = False
        origin, size = covering_grid(points, direction, spacing, margins)
        grid = make_grid(origin, size, spacing, direction)
        source = with_head(images[modality], distance, HEAD_SHELLS[modality], extra) if settings.skull \
            else images[modality]
        array = _acquire(source, pose, grid, None if three_d else 0, thickness)
        inside = array > 0
        array *= _bias_field(array.shape, settings.bias_coefficient, int(rng.integers(2**31)))
        mean = float(array[inside].mean()) if inside.any() else 1.0
        noise = rng
        if settings.skull or plain[2] != three_d:
            # `rng` draws the default exam's noise, so the later series are drawn as there; this one's is `extra`'s.
            plain_grid = make_grid(*covering_grid(points, direction, plain[0], margins), plain[0], direction)
            rng.normal(size=int(np.count_nonzero(_acquire(images[modality], pose, plain_grid,
                                                          None if plain[2] else 0, plain[1]) > 0)))
            noise = extra
        array[inside] += noise.normal(0.0, settings.noise_fraction * mean, int(inside.sum()))
        peak = float(rng.uniform(*settings.peak_range))
        top = float(np.percentile(array[inside], 99.5)) if inside.any() else 1.0
        array = np.clip(np.rint(np.where(inside, array, 0.0) * (peak / max(top, 1e-6))), 0, 32767)
        out = sitk.GetImageFromArray(array.astype(np.int16))
        out.CopyInformation(grid)
        series[modality] = out
        poses[modality] = pose
        record.series[modality] = SeriesRecord(plane, spacing.round(3).tolist(), size.tolist(), round(thickness, 3),
                                               round(motion_angle, 3), round(motion_shift, 3),
                                               direction.round(5).ravel().tolist(), origin.round(3).tolist(),
                                               round(peak, 1))
    target = "t1c" if "t1c" in series else next(iter(series))  # the engine's reference grid when T1Gd is given
    reference = sitk.Resample(label, series[target], poses[target], sitk.sitkNearestNeighbor, 0,
                              label.GetPixelID())
    return series, reference, record


def write_exam(series: dict[str, sitk.Image], label: sitk.Image, record: ExamRecord, root: Path) -> Path:
    """<root>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz and exam.json; returns the case folder."""
    folder = Path(root) / record.case
    folder.mkdir(parents=True, exist_ok=True)
    for modality, image in series.items():
        write_image_atomic(image, folder / f"{record.case}_{FILE_SUFFIX[modality]}.nii.gz")
    write_image_atomic(label, folder / f"{record.case}_seg.nii.gz")
    write_text_atomic(json.dumps(asdict(record), indent=1) + "\n", folder / "exam.json")
    return folder


def generate(roots: list[Path], out: Path, seed: int, cases: tuple[str, ...] = (),
             settings: ExamSettings = ExamSettings(), log=print) -> list[Path]:
    """Write the clinical-like exam of every labelled case below the roots (or of the named ones) under out."""
    check_output_folder(out, "--out")
    items = labelled_cases(roots, only=set(cases) if cases else None)
    missing = set(cases) - {i.case.name for i in items}
    if missing:
        raise InputError(f"cases not found under the given folders: {', '.join(sorted(missing))}.")
    if not items:
        raise InputError(f"no labelled case found under {', '.join(map(str, roots))}.")
    folders = []
    for item in items:
        images = {m: read_image(p, DISPLAY_NAMES[m]) for m, p in item.case.inputs.items()}
        series, label, record = make_exam(images, sitk.ReadImage(str(item.case.label)), item.case.name, seed,
                                          settings)
        folders.append(write_exam(series, label, record, out))
        pose = ", ".join(f"{a:+.1f}" for a in record.head_rotation_deg)
        log(f"{item.case.name}: head rotated ({pose}) degrees; "
            + ", ".join(f"{m} {s.plane} {s.spacing_mm[2]:.1f} mm" for m, s in record.series.items()))
    return folders
