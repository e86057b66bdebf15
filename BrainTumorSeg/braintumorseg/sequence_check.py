"""Sequences checked for what they claim to be: file names and headers against their flags, then contrast.

Two checks, both turned off by `SequenceCheckSettings(enabled=False)` (`--trust-sequences`):

- names: a file whose name (or header description) names another sequence than its flag, or whose header
  echo time contradicts it (T1-weighted below 30 ms, T2-weighted above 60 ms), stops the run with one
  sentence naming both sequences (`InputError`);
- contrast: inside the brain, each channel's intensity statistics (percentiles, the brain's rim where the
  CSF of the sulci lies, its deep centre, its correlation with the other channels) are scored by a small
  linear discriminant calibrated on the training cases (`Resources/SequenceCheck/contrast_model.json`,
  made by `python -m training.sequence_check_benchmark --calibrate`). When another assignment of the given
  files to the given flags is more likely than the user's by `margin` (log-probability), a warning names the
  sequences that look swapped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .modalities import DISPLAY_NAMES, MODALITIES, SHORT_NAMES, modality_from_name
from .resources import RESOURCES

CONTRAST_MODEL = RESOURCES / "SequenceCheck" / "contrast_model.json"
# Header fields that carry a series description (NIfTI descrip and aux_file, DICOM series description).
DESCRIPTION_KEYS = ("descrip", "aux_file", "0008|103e", "SeriesDescription", "intent_name")
# Echo times (ms) no T1-weighted sequence exceeds and no T2-weighted one falls below.
T1_MAX_ECHO_MS, T2_MIN_ECHO_MS = 30.0, 60.0
T1_WEIGHTED, T2_WEIGHTED = ("t1", "t1c"), ("t2", "flair")
SAMPLING_MM = 2.0  # the contrast statistics are taken on a grid of about this step
RIM_MM = 4.0  # the outer band of the brain mask: cortex and the CSF of the sulci
DEEP_MM = 20.0  # deeper than this from the brain's edge: white matter, ventricles, tumour
QUANTILES = (0.01, 0.05, 0.1, 0.9, 0.95, 0.99, 0.995)
FEATURES = tuple(f"q{q * 100:g}" for q in QUANTILES) + ("rim", "rim_q90", "deep", "deep_q10", "deep_q90",
                                                          "max_corr", "min_corr")
OVERRIDE = "--trust-sequences"


@dataclass(frozen=True)
class SequenceCheckSettings:
    """`enabled` False trusts the flags; `margin` is how much more likely (log-probability) another assignment
    of the given images must be than the user's to be reported."""

    enabled: bool = True
    margin: float | None = None  # None: the calibrated model's own margin


# ---- names and headers ----------------------------------------------------------------------------

def header_hints(path: str | os.PathLike) -> tuple[str | None, float | None]:
    """The sequence a file's header description names (or None) and its echo time in ms (or None)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None, None
    texts = [reader.GetMetaData(k) for k in DESCRIPTION_KEYS if reader.HasMetaDataKey(k)]
    named = next((m for m in (modality_from_name(t) for t in texts) if m), None)
    echo = next((float(match.group(1)) for t in texts
                 for match in [re.search(r"(?:^|[;\s])TE\s*=\s*([0-9.]+(?:e[+-]?[0-9]+)?)", t, re.I)] if match), None)
    return named, echo


def name_problems(inputs: dict[str, str | os.PathLike]) -> list[str]:
    """One sentence per contradiction between a flag and its file's name or header (an empty list: none)."""
    claims: dict[str, tuple[str, str]] = {}  # flag -> (sequence the file claims, where it says so)
    echoes: dict[str, float] = {}
    for flag, path in inputs.items():
        name = Path(path).name
        named, echo = header_hints(path)
        by_name = modality_from_name(name)
        if by_name and by_name != flag:
            claims[flag] = (by_name, f"its name ({name})")
        elif named and named != flag and not by_name:
            claims[flag] = (named, f"its header description ({name})")
        if echo is not None:
            echoes[flag] = echo
    problems, told = [], set()
    for flag, (claimed, where) in claims.items():
        if flag in told:
            continue
        other = claims.get(claimed)
        if claimed in inputs and other and other[0] == flag:
            told |= {flag, claimed}
            problems.append(f"the --{flag} and --{claimed} files look swapped: the {SHORT_NAMES[flag]} file is "
                            f"{SHORT_NAMES[claimed]} by {where} and the {SHORT_NAMES[claimed]} file is "
                            f"{SHORT_NAMES[flag]} by {other[1]}; give each file to its own flag, or add {OVERRIDE} "
                            "if the flags are right.")
        else:
            told.add(flag)
            problems.append(f"the file given as --{flag} ({SHORT_NAMES[flag]}) is {SHORT_NAMES[claimed]} by "
                            f"{where}; give it to --{claimed}, or add {OVERRIDE} if it is the {SHORT_NAMES[flag]}.")
    for flag, echo in echoes.items():
        if flag in told:
            continue
        if flag in T1_WEIGHTED and echo > T2_MIN_ECHO_MS:
            kind = "T2-weighted"
        elif flag in T2_WEIGHTED and echo < T1_MAX_ECHO_MS:
            kind = "T1-weighted"
        else:
            continue
        problems.append(f"the file given as --{flag} ({SHORT_NAMES[flag]}) has an echo time of {echo:g} ms in its "
                        f"header, a {kind} sequence; check which file is which, or add {OVERRIDE} if it is the "
                        f"{SHORT_NAMES[flag]}.")
    return problems


# ---- contrast -------------------------------------------------------------------------------------

MIN_SAMPLED_VOXELS = 50


def sampled(channels: dict[str, np.ndarray], mask: np.ndarray, spacing_zyx: tuple[float, ...]):
    """Channels and mask on a grid of about `SAMPLING_MM` steps, and that grid's spacing (z, y, x)."""
    steps = tuple(max(1, int(round(SAMPLING_MM / s))) for s in spacing_zyx)
    grid = tuple(slice(None, None, k) for k in steps)
    return ({m: np.asarray(a[grid], np.float32) for m, a in channels.items()}, mask[grid],
            tuple(s * k for s, k in zip(spacing_zyx, steps)))


def contrast_features(channels: dict[str, np.ndarray], mask: np.ndarray,
                      spacing_zyx: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Each channel's statistics inside the brain (the order of `FEATURES`), on already `sampled` arrays.

    Intensities are put on a robust scale (median 0, interquartile range 1) so that scanner units and the
    normalization before do not matter; the rim and the deep centre are found from the mask alone."""
    depth = ndimage.distance_transform_edt(mask, sampling=spacing_zyx)
    rim, deep = mask & (depth <= RIM_MM), mask & (depth > DEEP_MM)
    if not deep.any():
        deep = mask & (depth >= np.percentile(depth[mask], 80))
    scaled = {}
    for modality, array in channels.items():
        values = array[mask]
        low, median, high = np.percentile(values, (25, 50, 75))
        scaled[modality] = (array - median) / max(high - low, 1e-6)
    names = list(scaled)
    flat = np.stack([scaled[m][mask] for m in names])
    correlation = np.corrcoef(flat) if len(names) > 1 else np.ones((1, 1))
    features = {}
    for index, modality in enumerate(names):
        array = scaled[modality]
        others = np.delete(correlation[index], index)
        features[modality] = np.array(
            [*np.quantile(flat[index], QUANTILES), np.median(array[rim]), np.quantile(array[rim], 0.9),
             np.median(array[deep]), np.quantile(array[deep], 0.1), np.quantile(array[deep], 0.9),
             others.max() if others.size else 0.0, others.min() if others.size else 0.0], np.float64)
    return features


@dataclass(frozen=True)
class ContrastModel:
    """A linear discriminant over `FEATURES`: class means and a shared covariance, in standardized units."""

    classes: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    means: np.ndarray  # (classes, features)
    precision: np.ndarray  # inverse of the shared covariance
    margin: float
    clip: float = 12.0  # a channel's log-probability is not taken below -clip (one odd channel cannot shout)

    @classmethod
    def fit(cls, samples: np.ndarray, labels: list[str], margin: float, shrinkage: float = 0.2) -> "ContrastModel":
        center, scale = samples.mean(0), samples.std(0) + 1e-6
        x = (samples - center) / scale
        classes = tuple(m for m in MODALITIES if m in labels)
        y = np.array([classes.index(label) for label in labels])
        means = np.stack([x[y == k].mean(0) for k in range(len(classes))])
        residual = x - means[y]
        covariance = residual.T @ residual / max(1, len(x) - len(classes))
        covariance = (1 - shrinkage) * covariance + shrinkage * np.eye(len(center))
        return cls(classes, center, scale, means, np.linalg.inv(covariance), margin)

    def log_probabilities(self, features: np.ndarray) -> np.ndarray:
        """(channels, classes) log posterior of each channel being each sequence (equal priors)."""
        x = (np.atleast_2d(features) - self.center) / self.scale
        difference = x[:, None, :] - self.means[None]
        score = -0.5 * np.einsum("ckf,fg,ckg->ck", difference, self.precision, difference)
        score -= score.max(1, keepdims=True)
        log_p = score - np.log(np.exp(score).sum(1, keepdims=True))
        return np.maximum(log_p, -self.clip)

    def to_json(self) -> str:
        return json.dumps({"features": list(FEATURES), "classes": list(self.classes), "center": self.center.tolist(),
                           "scale": self.scale.tolist(), "means": self.means.tolist(),
                           "precision": self.precision.tolist(), "margin": self.margin, "clip": self.clip}, indent=1)

    @classmethod
    def load(cls, path: Path = CONTRAST_MODEL) -> "ContrastModel":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"the sequence check's contrast model {path} cannot be read ({error}); reinstall "
                             f"BrainTumorSeg, or add {OVERRIDE} to skip the check.") from None
        if data.get("features") != list(FEATURES):
            raise InputError(f"the sequence check's contrast model {path} was made for other statistics; reinstall "
                             f"BrainTumorSeg, or add {OVERRIDE} to skip the check.")
        return cls(tuple(data["classes"]), *(np.array(data[k]) for k in ("center", "scale", "means", "precision")),
                   float(data["margin"]), float(data["clip"]))


def most_likely_assignment(log_p: np.ndarray, flags: list[str], classes: tuple[str, ...]) -> tuple[list[str], float]:
    """The permutation of the given flags that the channels most likely are, and how much more likely it is
    (log-probability) than the flags as given."""
    index = [classes.index(f) for f in flags]
    given = sum(log_p[i, k] for i, k in enumerate(index))
    best, gain = list(flags), 0.0
    for order in permutations(range(len(flags))):
        score = sum(log_p[i, index[j]] for i, j in enumerate(order))
        if score - given > gain + 1e-9:
            best, gain = [flags[j] for j in order], score - given
    return best, gain


def swap_sentence(flags: list[str], looks_like: list[str]) -> str:
    """One sentence naming the sequences that look swapped (given flag -> what the image looks like)."""
    moved = [(f, s) for f, s in zip(flags, looks_like) if f != s]
    if len(moved) == 2 and moved[0] == moved[1][::-1]:
        a, b = moved[0]
        return (f"the {DISPLAY_NAMES[a]} and {DISPLAY_NAMES[b]} inputs look swapped: the image given as "
                f"{SHORT_NAMES[a]} has the contrast of a {SHORT_NAMES[b]} and the one given as {SHORT_NAMES[b]} that "
                f"of a {SHORT_NAMES[a]}; check which file is which (the results depend on it), or add {OVERRIDE} if "
                "they are right.")
    said = ", ".join(f"the image given as {SHORT_NAMES[f]} looks like {SHORT_NAMES[s]}" for f, s in moved)
    return (f"the inputs look mixed up: {said}; check which file is which (the results depend on it), or add "
            f"{OVERRIDE} if they are right.")


class SequenceChecker:
    """Both checks with one set of settings; the contrast model is read once, for the first case that needs it."""

    def __init__(self, settings: SequenceCheckSettings = SequenceCheckSettings(), model_path: Path = CONTRAST_MODEL):
        self.settings = settings
        self.model_path = model_path
        self._model: ContrastModel | None = None

    def check_names(self, inputs: dict[str, str | os.PathLike]) -> None:
        """Stop with one sentence when a file's name or header contradicts its flag."""
        if self.settings.enabled:
            problems = name_problems(inputs)
            if problems:
                raise InputError(" Also, ".join(problems))

    def contrast_warnings(self, channels: dict[str, np.ndarray], mask: np.ndarray,
                          spacing_zyx: tuple[float, ...]) -> list[str]:
        """A warning when the images' contrast says two or more of them were given to each other's flags."""
        if not self.settings.enabled or len(channels) < 2:
            return []
        if np.count_nonzero(sampled(channels, mask, spacing_zyx)[1]) < MIN_SAMPLED_VOXELS:
            return []  # too little brain on the statistics' grid to judge the contrasts
        flags, looks_like, gain = self.assess_channels(channels, mask, spacing_zyx)
        margin = self.model.margin if self.settings.margin is None else self.settings.margin
        return [swap_sentence(flags, looks_like)] if gain > margin else []

    def assess_channels(self, channels: dict[str, np.ndarray], mask: np.ndarray,
                        spacing_zyx: tuple[float, ...]) -> tuple[list[str], list[str], float]:
        """`assess` on the statistics of prepared channels."""
        return self.assess(contrast_features(*sampled(channels, mask, spacing_zyx)))

    def assess(self, features: dict[str, np.ndarray]) -> tuple[list[str], list[str], float]:
        """The flags, what each channel most likely is (a permutation of them) and the log-probability gained."""
        flags = [m for m in features if m in self.model.classes]
        log_p = self.model.log_probabilities(np.stack([features[m] for m in flags]))
        return (flags, *most_likely_assignment(log_p, flags, self.model.classes))

    @property
    def model(self) -> ContrastModel:
        if self._model is None:
            self._model = ContrastModel.load(self.model_path)
        return self._model
